/* SPDX-License-Identifier: MIT
 * xent.cu - sum over rows of logsumexp(logits[r]) - logits[r][target[r]]: one block per row (fp32
 * max, double sum of exp as the CPU), per-row values summed in row order on the host side of the
 * device (one block) so the result is deterministic. */
#include "cuda-common.cuh"

__global__ void k_xent_rows(const float *L, const int32_t *t, size_t vocab, double *nll, int *bad) {
    __shared__ float shm[256];
    __shared__ double shs[256];
    const float *row = L + blockIdx.x * vocab;
    float m = -INFINITY;
    for (size_t c = threadIdx.x; c < vocab; c += blockDim.x) m = fmaxf(m, row[c]);
    shm[threadIdx.x] = m;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) shm[threadIdx.x] = fmaxf(shm[threadIdx.x], shm[threadIdx.x + s]);
        __syncthreads();
    }
    m = shm[0];
    double acc = 0;
    for (size_t c = threadIdx.x; c < vocab; c += blockDim.x) acc += exp((double)row[c] - m);
    shs[threadIdx.x] = acc;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) shs[threadIdx.x] += shs[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        int tg = t[blockIdx.x];
        if (tg < 0 || (size_t)tg >= vocab) {
            *bad = 1;
            nll[blockIdx.x] = 0;
        } else {
            nll[blockIdx.x] = log(shs[0]) + m - row[tg];
        }
    }
}

__global__ void k_sum_rows(double *v, size_t n) {
    __shared__ double sh[256];
    double acc = 0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) acc += v[i];
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) v[0] = sh[0];
}

extern "C" qd_status qd_cu_cross_entropy(qd_backend_t be, const struct qd_xent_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    void *ws;
    QD_CHECK(qd_cu_ws(c, a->rows * sizeof(double), &ws));
    QD_CUDA_CHECK(cudaMemsetAsync(c->flag, 0, sizeof(int), c->stream));
    for (size_t r0 = 0; r0 < a->rows; r0 += 1u << 30) {
        size_t nr = a->rows - r0 < (1u << 30) ? a->rows - r0 : (1u << 30);
        k_xent_rows<<<(unsigned)nr, 256, 0, c->stream>>>(QD_CU_F32(a->logits) + r0 * a->vocab, QD_CU_I32(a->targets) + r0,
                                                         a->vocab, (double *)ws + r0, c->flag);
        QD_LAUNCH_CHECK("cross_entropy");
    }
    k_sum_rows<<<1, 256, 0, c->stream>>>((double *)ws, a->rows);
    QD_LAUNCH_CHECK("cross_entropy");
    int bad = 0;
    QD_CUDA_CHECK(cudaMemcpyAsync(a->sum_out, ws, sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_CHECK(cudaMemcpyAsync(&bad, c->flag, sizeof(int), cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (bad) {
        *a->sum_out = 0;
        return qd_fail(QD_ERR_INTERNAL, "cuda backend: cross_entropy: a target is outside vocab %zu", a->vocab);
    }
    return QD_OK;
}
