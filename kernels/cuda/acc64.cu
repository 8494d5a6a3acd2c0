/* SPDX-License-Identifier: MIT
 * acc64.cu - fp64 sums of fp32 terms (qd-backend.h, qd_be_acc64). The triangle form runs one grid row
 * per matrix row, its blocks starting at the diagonal, so no thread divides an index and none of the
 * strict lower half is visited; it runs once per calibration chunk and Hessian, on K^2 / 2 values. */
#include "cuda-common.cuh"

__global__ void k_acc64_flat(int round, double *acc, float *x, size_t n) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        if (round) x[e] = (float)acc[e]; /* round to nearest */
        else acc[e] += (double)x[e];
    }
}

/* row = blockIdx.y + y0; columns row .. K-1, blockDim.x * gridDim.x of them per pass */
__global__ void k_acc64_upper(int round, double *acc, float *x, size_t K, size_t y0) {
    size_t row = y0 + blockIdx.y;
    for (size_t c = row + blockIdx.x * (size_t)blockDim.x + threadIdx.x; c < K; c += (size_t)gridDim.x * blockDim.x) {
        size_t e = row * K + c;
        if (round) x[e] = (float)acc[e];
        else acc[e] += (double)x[e];
    }
}

extern "C" qd_status qd_cu_acc64(qd_backend_t be, const struct qd_acc64_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    double *acc = (double *)QD_CU_F32(a->acc);
    float *x = QD_CU_F32(a->x);
    int round = a->kind == QD_ACC64_ROUND;
    if (!a->upper_k) {
        k_acc64_flat<<<qd_cu_blocks(a->n, 256), 256, 0, c->stream>>>(round, acc, x, a->n);
        QD_LAUNCH_CHECK("acc64");
        return QD_OK;
    }
    size_t K = a->upper_k;
    unsigned bx = (unsigned)((K + 255) / 256 < 8 ? (K + 255) / 256 : 8);
    for (size_t y0 = 0; y0 < K; y0 += 65535) { /* grid.y is at most 65535 rows */
        unsigned ny = (unsigned)(K - y0 < 65535 ? K - y0 : 65535);
        k_acc64_upper<<<dim3(bx, ny), 256, 0, c->stream>>>(round, acc, x, K, y0);
        QD_LAUNCH_CHECK("acc64");
    }
    return QD_OK;
}
