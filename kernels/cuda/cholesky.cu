/* SPDX-License-Identifier: MIT
 * cholesky.cu - GPTQ's "Hinv": A <- U, the upper Cholesky factor of A^-1, with cuSOLVER in double
 * precision, the same steps as the CPU's LAPACK path (kernels/cpu/blas.c): copy to fp64, potrf
 * (column-major lower), potri, mirror, potrf again, back to fp32 with the row-major strict lower
 * triangle cleared. fp64 because damped Hessians of real activations reach condition numbers near
 * 1e5, where an fp32 factorisation moves U by ~1e-3. Not positive definite: QD_ERR_NUMERIC, nothing
 * printed. The fp64 copy (8 n^2 bytes) is allocated for the call and freed before it returns. */
#include "cuda-common.cuh"

__global__ void k_f2d(double *D, const float *A, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        D[i] = (double)A[i];
}

/* row-major upper (= column-major lower) copied into the row-major lower triangle */
__global__ void k_mirror_up_d(double *D, size_t n) {
    size_t tot = n * n;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < tot; idx += (size_t)gridDim.x * blockDim.x) {
        size_t i = idx / n, j = idx % n;
        if (i > j) D[idx] = D[j * n + i];
    }
}

__global__ void k_d2f_upper(float *A, const double *D, size_t n) {
    size_t tot = n * n;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < tot; idx += (size_t)gridDim.x * blockDim.x)
        A[idx] = idx / n > idx % n ? 0.0f : (float)D[idx];
}

/* reads the cuSOLVER info of the last call: *numeric = 1 when the matrix was not positive definite */
static qd_status info_of(struct qd_cuda_ctx *c, const char *what, int *numeric) {
    int info = 0;
    QD_CUDA_CHECK(cudaMemcpyAsync(&info, c->flag, sizeof info, cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (info < 0) return qd_fail(QD_ERR_INTERNAL, "cuda backend: %s argument %d invalid", what, -info);
    *numeric = info > 0;
    return QD_OK;
}

static qd_status factor(struct qd_cuda_ctx *c, float *A, size_t n, double *D, double *work, int lw) {
    int ni = (int)n, bad = 0;
    unsigned nb = qd_cu_blocks(n * n, 256);
    k_f2d<<<nb, 256, 0, c->stream>>>(D, A, n * n);
    QD_LAUNCH_CHECK("chol_inv");
    QD_CUSOLVER_CHECK(cusolverDnDpotrf(c->solver, CUBLAS_FILL_MODE_LOWER, ni, D, ni, work, lw, c->flag));
    QD_CHECK(info_of(c, "dpotrf", &bad));
    if (bad) return QD_ERR_NUMERIC;
    QD_CUSOLVER_CHECK(cusolverDnDpotri(c->solver, CUBLAS_FILL_MODE_LOWER, ni, D, ni, work, lw, c->flag));
    QD_CHECK(info_of(c, "dpotri", &bad));
    if (bad) return QD_ERR_NUMERIC;
    k_mirror_up_d<<<nb, 256, 0, c->stream>>>(D, n);
    QD_LAUNCH_CHECK("chol_inv");
    QD_CUSOLVER_CHECK(cusolverDnDpotrf(c->solver, CUBLAS_FILL_MODE_LOWER, ni, D, ni, work, lw, c->flag));
    QD_CHECK(info_of(c, "dpotrf", &bad));
    if (bad) return QD_ERR_NUMERIC;
    k_d2f_upper<<<nb, 256, 0, c->stream>>>(A, D, n);
    QD_LAUNCH_CHECK("chol_inv");
    return QD_OK;
}

extern "C" qd_status qd_cu_chol_inv(qd_backend_t be, const struct qd_chol_inv_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    size_t n = a->n;
    int ni = (int)n, lw1 = 0, lw2 = 0;
    double *D = NULL;
    QD_CUSOLVER_CHECK(cusolverDnDpotrf_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, ni, D, ni, &lw1));
    QD_CUSOLVER_CHECK(cusolverDnDpotri_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, ni, D, ni, &lw2));
    int lw = lw1 > lw2 ? lw1 : lw2;
    if (lw < 1) lw = 1;
    size_t bytes = (n * n + (size_t)lw) * sizeof(double);
    /* from the pool: one cudaMalloc for the run instead of one per layer */
    QD_CHECK(qd_cu_pool_alloc(c, bytes, (void **)&D));
    qd_status st = factor(c, QD_CU_F32(a->A), n, D, D + n * n, lw);
    qd_cu_pool_free(c, D);
    return st;
}
