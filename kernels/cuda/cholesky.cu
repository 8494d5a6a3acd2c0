/* SPDX-License-Identifier: MIT
 * cholesky.cu - GPTQ's "Hinv": A <- U, the upper Cholesky factor of A^-1, with cuSOLVER in double
 * precision, the same steps as the CPU's LAPACK path (kernels/cpu/blas.c, which derives them).
 * Fast numerics: the reversed fp64 copy J A J, potrf (column-major lower), trtri (lower, non-unit),
 * then U = J L^-1 J back to fp32 (2/3 n^3 flops). Exact numerics keep the older copy, potrf, potri,
 * mirror, potrf (4/3 n^3), so their output is what it was. fp64 because damped Hessians of real
 * activations reach condition numbers near 1e5, where an fp32 factorisation moves U by ~1e-3. Not
 * positive definite: QD_ERR_NUMERIC, nothing printed, A untouched (only the copy was factored). The
 * fp64 copy (8 n^2 bytes) and the workspace come from the pool for the call. */
#include <stdlib.h>

#include "exact.cuh"

__global__ void k_f2d(double *D, const float *A, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        D[i] = (double)A[i];
}

/* D = J A J: the element array reversed */
__global__ void k_f2d_rev(double *D, const float *A, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        D[i] = (double)A[n - 1 - i];
}

/* U[i][j] = (J L^-1 J)[i][j] = L^-1[n-1-i][n-1-j], which column-major sits at D[n*n-1-(j*n+i)]: with
 * E the reversed array read row-major (E[r][c] = D[n*n-1-(r*n+c)]), U is E^T with the strict lower
 * triangle cleared. A 32 x 32 tiled transpose keeps both sides coalesced; block (bx, by) writes A's
 * tile at rows by*32.., columns bx*32.., and tiles below the diagonal are zeros, read from nowhere. */
__global__ void k_d2f_upper_rev(float *A, const double *D, size_t n) {
    __shared__ double t[32][33];
    size_t bx = blockIdx.x, by = blockIdx.y, tot = n * n;
    if (by <= bx)
        for (unsigned r = threadIdx.y; r < 32; r += blockDim.y) {
            size_t er = bx * 32 + r, ec = by * 32 + threadIdx.x;
            if (er < n && ec < n) t[r][threadIdx.x] = D[tot - 1 - (er * n + ec)];
        }
    __syncthreads();
    for (unsigned r = threadIdx.y; r < 32; r += blockDim.y) {
        size_t i = by * 32 + r, j = bx * 32 + threadIdx.x;
        if (i < n && j < n) A[i * n + j] = i > j ? 0.0f : (float)t[threadIdx.x][r];
    }
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

/* the exact-numerics path: potrf, potri, mirror, potrf */
static qd_status chol_inv_twice(struct qd_cuda_ctx *c, float *A, size_t n) {
    int ni = (int)n, lw1 = 0, lw2 = 0;
    double *D = NULL;
    QD_CUSOLVER_CHECK(cusolverDnDpotrf_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, ni, D, ni, &lw1));
    QD_CUSOLVER_CHECK(cusolverDnDpotri_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, ni, D, ni, &lw2));
    int lw = lw1 > lw2 ? lw1 : lw2;
    if (lw < 1) lw = 1;
    size_t bytes = (n * n + (size_t)lw) * sizeof(double);
    /* from the pool: one cudaMalloc for the run instead of one per layer */
    QD_CHECK(qd_cu_pool_alloc(c, bytes, (void **)&D));
    qd_status st = factor(c, A, n, D, D + n * n, lw);
    qd_cu_pool_free(c, D);
    return st;
}

/* the fast path: reversed copy, potrf, trtri, reversed transposed copy back */
static qd_status rev_factor(struct qd_cuda_ctx *c, float *A, size_t n, double *D, double *work, int lw,
                            void *dwork, size_t dbytes, void *hwork, size_t hbytes) {
    int ni = (int)n, bad = 0;
    unsigned nb = qd_cu_blocks(n * n, 256);
    k_f2d_rev<<<nb, 256, 0, c->stream>>>(D, A, n * n);
    QD_LAUNCH_CHECK("chol_inv");
    QD_CUSOLVER_CHECK(cusolverDnDpotrf(c->solver, CUBLAS_FILL_MODE_LOWER, ni, D, ni, work, lw, c->flag));
    QD_CHECK(info_of(c, "dpotrf", &bad));
    if (bad) return QD_ERR_NUMERIC;
    QD_CUSOLVER_CHECK(cusolverDnXtrtri(c->solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, (int64_t)n, CUDA_R_64F,
                                       D, (int64_t)n, dwork, dbytes, hwork, hbytes, c->flag));
    QD_CHECK(info_of(c, "Xtrtri", &bad)); /* also keeps hwork alive until trtri is done */
    if (bad) return QD_ERR_NUMERIC;       /* a zero pivot: cannot follow a successful potrf */
    size_t nt = (n + 31) / 32;
    if (nt > 65535) return qd_fail(QD_ERR_UNSUPPORTED, "cuda backend: chol_inv of a %zu x %zu matrix", n, n);
    k_d2f_upper_rev<<<dim3((unsigned)nt, (unsigned)nt), dim3(32, 8), 0, c->stream>>>(A, D, n);
    QD_LAUNCH_CHECK("chol_inv");
    return QD_OK;
}

extern "C" qd_status qd_cu_chol_inv(qd_backend_t be, const struct qd_chol_inv_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    size_t n = a->n;
    if (qd_cu_exact(be)) return chol_inv_twice(c, QD_CU_F32(a->A), n);
    int ni = (int)n, lw = 0;
    size_t dbytes = 0, hbytes = 0;
    double *D = NULL;
    QD_CUSOLVER_CHECK(cusolverDnDpotrf_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, ni, D, ni, &lw));
    QD_CUSOLVER_CHECK(cusolverDnXtrtri_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, (int64_t)n,
                                                  CUDA_R_64F, D, (int64_t)n, &dbytes, &hbytes));
    if (lw < 1) lw = 1;
    size_t pot = ((size_t)lw * sizeof(double) + 255) / 256 * 256; /* trtri's workspace after potrf's, aligned */
    size_t bytes = n * n * sizeof(double) + pot + dbytes;
    void *hwork = NULL;
    if (hbytes && !(hwork = malloc(hbytes)))
        return qd_fail(QD_ERR_NOMEM, "cuda backend: chol_inv: no host memory for %zu bytes of trtri workspace", hbytes);
    qd_status st = qd_cu_pool_alloc(c, bytes, (void **)&D);
    if (st == QD_OK) {
        char *w = (char *)(D + n * n);
        st = rev_factor(c, QD_CU_F32(a->A), n, D, (double *)w, lw, dbytes ? w + pot : NULL, dbytes, hwork, hbytes);
        qd_cu_pool_free(c, D);
    }
    free(hwork);
    return st;
}
