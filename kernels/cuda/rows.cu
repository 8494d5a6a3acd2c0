/* SPDX-License-Identifier: MIT
 * rows.cu - gather / scatter-add of rows by index (the mixture-of-experts dispatch, qd-backend.h
 * qd_rows_args). One thread per element; the indices of one scatter call are distinct, so no two
 * threads add into the same element. The product is rounded before the sum, as the CPU computes it. */
#include "cuda-common.cuh"

__global__ void k_rows(int gather, float *out, const float *x, const int32_t *idx, const float *w, size_t n,
                       size_t rows, size_t cols) {
    size_t total = n * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / cols, c = i - r * cols, t = (size_t)idx[r];
        if (idx[r] < 0 || t >= rows) continue; /* never outside the buffer (the host builds the indices) */
        if (gather) out[r * cols + c] = x[t * cols + c];
        else out[t * cols + c] = __fadd_rn(out[t * cols + c], __fmul_rn(w[r], x[r * cols + c]));
    }
}

extern "C" qd_status qd_cu_rows(qd_backend_t be, const struct qd_rows_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    int gather = a->kind == QD_ROWS_GATHER;
    k_rows<<<qd_cu_blocks(a->n * a->cols, 256), 256, 0, c->stream>>>(gather, QD_CU_F32(a->out), QD_CU_F32(a->x),
                                                                      QD_CU_I32(a->idx),
                                                                      gather ? NULL : QD_CU_F32(a->w), a->n, a->rows,
                                                                      a->cols);
    QD_LAUNCH_CHECK("rows");
    return QD_OK;
}
