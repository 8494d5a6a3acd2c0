/* SPDX-License-Identifier: MIT
 * rope.cu - half-split RoPE in place: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin (no fused
 * multiply-add, as the CPU). */
#include "cuda-common.cuh"

__global__ void k_rope(float *x, const float *cs, const float *sn, size_t rows, size_t heads, size_t hd, size_t ld,
                       size_t seq) {
    size_t half = hd / 2, n = rows * heads * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
        size_t i = idx % half, h = (idx / half) % heads, r = idx / (half * heads);
        size_t pos = r % seq;
        float c = cs[pos * half + i], s = sn[pos * half + i];
        float *p = x + r * ld + h * hd;
        float x1 = p[i], x2 = p[i + half];
        p[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
        p[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    }
}

extern "C" qd_status qd_cu_rope(qd_backend_t be, const struct qd_rope_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    k_rope<<<qd_cu_blocks(a->rows * a->heads * a->head_dim / 2, 256), 256, 0, c->stream>>>(
        QD_CU_F32(a->x), QD_CU_F32(a->cos), QD_CU_F32(a->sin), a->rows, a->heads, a->head_dim, a->ld, a->seq_len);
    QD_LAUNCH_CHECK("rope");
    return QD_OK;
}
