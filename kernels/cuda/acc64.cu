/* SPDX-License-Identifier: MIT
 * acc64.cu - fp64 sums of fp32 terms (qd-backend.h, qd_be_acc64): one element per thread, the
 * triangle form skipping the strict lower half. */
#include "cuda-common.cuh"

__global__ void k_acc64(int round, double *acc, float *x, size_t n, size_t K) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        if (K && e % K < e / K) continue; /* column < row */
        if (round) x[e] = (float)acc[e]; /* round to nearest */
        else acc[e] += (double)x[e];
    }
}

extern "C" qd_status qd_cu_acc64(qd_backend_t be, const struct qd_acc64_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    k_acc64<<<qd_cu_blocks(a->n, 256), 256, 0, c->stream>>>(a->kind == QD_ACC64_ROUND, (double *)QD_CU_F32(a->acc),
                                                             QD_CU_F32(a->x), a->n, a->upper_k);
    QD_LAUNCH_CHECK("acc64");
    return QD_OK;
}
