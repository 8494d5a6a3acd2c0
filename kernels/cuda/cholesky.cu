/* SPDX-License-Identifier: MIT
 * cholesky.cu - GPTQ's "Hinv": A <- U, the upper Cholesky factor of A^-1, with cuSOLVER: potrf
 * (column-major lower), potri, mirror, potrf again, clear the row-major strict lower triangle.
 * Same steps as the CPU's LAPACK path. Not positive definite: QD_ERR_NUMERIC, nothing printed. */
#include "cuda-common.cuh"

__global__ void k_mirror_up(float *A, size_t n) {
    size_t tot = n * n;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < tot; idx += (size_t)gridDim.x * blockDim.x) {
        size_t i = idx / n, j = idx % n;
        if (i > j) A[idx] = A[j * n + i];
    }
}

__global__ void k_clear_lower(float *A, size_t n) {
    size_t tot = n * n;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < tot; idx += (size_t)gridDim.x * blockDim.x)
        if (idx / n > idx % n) A[idx] = 0.0f;
}

static qd_status info_of(struct qd_cuda_ctx *c, const char *what, int *numeric) {
    int info = 0;
    QD_CUDA_CHECK(cudaMemcpyAsync(&info, c->flag, sizeof info, cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (info < 0) return qd_fail(QD_ERR_INTERNAL, "cuda backend: %s argument %d invalid", what, -info);
    *numeric = info > 0;
    return QD_OK;
}

extern "C" qd_status qd_cu_chol_inv(qd_backend_t be, const struct qd_chol_inv_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    float *A = QD_CU_F32(a->A);
    int n = (int)a->n, lw1 = 0, lw2 = 0, bad = 0;
    QD_CUSOLVER_CHECK(cusolverDnSpotrf_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, n, &lw1));
    QD_CUSOLVER_CHECK(cusolverDnSpotri_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, n, &lw2));
    int lw = lw1 > lw2 ? lw1 : lw2;
    void *ws;
    QD_CHECK(qd_cu_ws(c, (size_t)(lw > 0 ? lw : 1) * 4, &ws));
    float *work = (float *)ws;
    QD_CUSOLVER_CHECK(cusolverDnSpotrf(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, n, work, lw, c->flag));
    QD_CHECK(info_of(c, "spotrf", &bad));
    if (bad) return QD_ERR_NUMERIC;
    QD_CUSOLVER_CHECK(cusolverDnSpotri(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, n, work, lw, c->flag));
    QD_CHECK(info_of(c, "spotri", &bad));
    if (bad) return QD_ERR_NUMERIC;
    k_mirror_up<<<qd_cu_blocks(a->n * a->n, 256), 256, 0, c->stream>>>(A, a->n);
    QD_LAUNCH_CHECK("mirror");
    QD_CUSOLVER_CHECK(cusolverDnSpotrf(c->solver, CUBLAS_FILL_MODE_LOWER, n, A, n, work, lw, c->flag));
    QD_CHECK(info_of(c, "spotrf", &bad));
    if (bad) return QD_ERR_NUMERIC;
    k_clear_lower<<<qd_cu_blocks(a->n * a->n, 256), 256, 0, c->stream>>>(A, a->n);
    QD_LAUNCH_CHECK("clear_lower");
    return QD_OK;
}
