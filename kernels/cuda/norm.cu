/* SPDX-License-Identifier: MIT
 * norm.cu - HF RMSNorm per row: sum of squares in double, var in fp32, x * (1 / sqrtf(var + eps)),
 * then * weight, as the CPU computes it. One block per row. */
#include "exact.cuh"

__global__ void k_rmsnorm(float *out, const float *x, const float *w, size_t dim, size_t ld, float eps, int exact) {
    __shared__ double sh[256];
    const float *xr = x + blockIdx.x * ld;
    float *o = out + blockIdx.x * ld;
    if (exact) {
        /* exact numerics: the CPU's order, one thread down the row (the squares are exact in fp64) */
        if (threadIdx.x == 0) {
            double ss = 0;
            for (size_t c = 0; c < dim; c++) ss = __dadd_rn(ss, (double)xr[c] * (double)xr[c]);
            sh[0] = ss;
        }
        __syncthreads();
    } else {
        double ss = 0;
        for (size_t c = threadIdx.x; c < dim; c += blockDim.x) ss += (double)xr[c] * (double)xr[c];
        sh[threadIdx.x] = ss;
        __syncthreads();
        for (int s = 128; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
            __syncthreads();
        }
    }
    float var = (float)(sh[0] / (double)dim);
    float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
    for (size_t c = threadIdx.x; c < dim; c += blockDim.x) {
        float n = __fmul_rn(xr[c], inv);
        o[c] = w ? __fmul_rn(w[c], n) : n;
    }
}

extern "C" qd_status qd_cu_rmsnorm(qd_backend_t be, const struct qd_rmsnorm_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    for (size_t r0 = 0; r0 < a->rows; r0 += 1u << 30) {
        size_t nr = a->rows - r0 < (1u << 30) ? a->rows - r0 : (1u << 30);
        k_rmsnorm<<<(unsigned)nr, 256, 0, c->stream>>>(QD_CU_F32(a->out) + r0 * a->ld, QD_CU_F32(a->x) + r0 * a->ld,
                                                       a->weight.buf ? QD_CU_F32(a->weight) : NULL, a->dim, a->ld,
                                                       a->eps, qd_cu_exact(be));
        QD_LAUNCH_CHECK("rmsnorm");
    }
    return QD_OK;
}
