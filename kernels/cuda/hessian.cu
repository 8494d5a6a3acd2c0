/* SPDX-License-Identifier: MIT
 * hessian.cu - H = beta H + alpha X^T X: cuBLAS SYRK in fp32, TF32 or bf16 (fp32 accumulation) GEMMs
 * over column strips of the lower triangle (column-major; SYRK has no tensor-core path) under tf32/bf16
 * math; the other triangle mirrored unless the caller asked for the upper one only (qd-backend.h), then
 * once by symmetrize; and diag_add (damping). Exact numerics: kernels/cuda/gemm-exact.cu.
 */
#include <cuda_bf16.h>

#include "exact.cuh"

/* row-major upper = column-major lower: copied into the row-major lower triangle through 32 x 32
 * shared-memory tiles, so that both the reads and the writes are coalesced. Block (bx, by) writes the
 * lower tile at rows by*32.., columns bx*32.. (by >= bx) from the upper tile at rows bx*32.., columns
 * by*32..; blocks above the diagonal exit. */
__global__ void k_mirror_upper(float *H, size_t n) {
    __shared__ float t[32][33];
    size_t bx = blockIdx.x, by = blockIdx.y;
    if (by < bx) return;
    for (unsigned r = threadIdx.y; r < 32; r += blockDim.y) {
        size_t i = bx * 32 + r, j = by * 32 + threadIdx.x; /* upper source (i, j) */
        if (i < n && j < n) t[r][threadIdx.x] = H[i * n + j];
    }
    __syncthreads();
    for (unsigned r = threadIdx.y; r < 32; r += blockDim.y) {
        size_t i = by * 32 + r, j = bx * 32 + threadIdx.x; /* lower destination (i, j) = source (j, i) */
        if (i < n && j < n && i > j) H[i * n + j] = t[threadIdx.x][r];
    }
}

static qd_status mirror(struct qd_cuda_ctx *c, float *H, size_t n) {
    size_t nt = (n + 31) / 32;
    if (nt > 65535) return qd_fail(QD_ERR_UNSUPPORTED, "cuda backend: symmetrize of a %zu x %zu matrix (at most %d)",
                                   n, n, 65535 * 32);
    k_mirror_upper<<<dim3((unsigned)nt, (unsigned)nt), dim3(32, 8), 0, c->stream>>>(H, n);
    QD_LAUNCH_CHECK("mirror");
    return QD_OK;
}

extern "C" qd_status qd_cu_symmetrize(qd_backend_t be, const struct qd_symmetrize_args *a) {
    return mirror(qd_cu(be), QD_CU_F32(a->A), a->n);
}

__global__ void k_scale_all(float *H, size_t n, float beta) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        H[i] = beta == 0.0f ? 0.0f : beta * H[i];
}

__global__ void k_rows_bf16(__nv_bfloat16 *dst, const float *src, size_t rows, size_t cols, size_t ld) {
    size_t n = rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[ld == cols ? i : (i / cols) * ld + i % cols]); /* dense: no division */
}

/* Tensor-core math: the column-major lower triangle (= row-major upper) in strips of c->hess_tile
 * columns, one GEMM each: strip [c0, c0 + w) gets rows [c0, K) = alpha X[:, c0:]^T X[:, c0:c0+w] + beta.
 * About half the flops of the full GEMM plus half a strip per strip; the diagonal blocks' other half is
 * computed too (the unspecified triangle). bf16 converts X once into scratch. */
static qd_status tc_strips(struct qd_cuda_ctx *c, const struct qd_hessian_args *a) {
    size_t K = a->K, tile = c->hess_tile ? c->hess_tile : K;
    float *H = QD_CU_F32(a->H);
    const void *X = QD_CU_F32(a->X);
    size_t ldx = a->ldx, esz = 4;
    cudaDataType xt = CUDA_R_32F;
    cublasComputeType_t ct = CUBLAS_COMPUTE_32F_FAST_TF32;
    if (c->math == QD_CU_BF16) {
        void *ws;
        QD_CHECK(qd_cu_ws(c, a->T * K * 2, &ws));
        k_rows_bf16<<<qd_cu_blocks(a->T * K, 256), 256, 0, c->stream>>>((__nv_bfloat16 *)ws, QD_CU_F32(a->X), a->T, K,
                                                                        a->ldx);
        QD_LAUNCH_CHECK("to_bf16");
        X = ws, ldx = K, esz = 2, xt = CUDA_R_16BF, ct = CUBLAS_COMPUTE_32F;
    }
    for (size_t c0 = 0; c0 < K; c0 += tile) {
        size_t w = K - c0 < tile ? K - c0 : tile;
        const char *Xc = (const char *)X + c0 * esz; /* column-major X^T [K, T]: rows from c0 */
        QD_CUBLAS_CHECK(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)(K - c0), (int)w, (int)a->T, &a->alpha, Xc,
                                     xt, (int)ldx, Xc, xt, (int)ldx, &a->beta, H + c0 * K + c0, CUDA_R_32F, (int)K, ct,
                                     CUBLAS_GEMM_DEFAULT));
    }
    return QD_OK;
}

extern "C" qd_status qd_cu_hessian(qd_backend_t be, const struct qd_hessian_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    float *H = QD_CU_F32(a->H);
    size_t K = a->K;
    if (a->T == 0) {
        if (a->beta != 1.0f) {
            k_scale_all<<<qd_cu_blocks(K * K, 256), 256, 0, c->stream>>>(H, K * K, a->beta);
            QD_LAUNCH_CHECK("scale");
        }
        return QD_OK;
    }
    if (qd_cu_exact(be)) {
        /* H = (float)(alpha X^T X + beta H) on the upper triangle in the CPU's fixed fp64 order, then
         * the lower triangle copied from it, as kernels/cpu/exact.c does */
        struct qd_cu_xg g = {.ta = 1, .tb = 0, .upper = 1, .M = K, .N = K, .K = a->T, .A = QD_CU_F32(a->X),
                             .B = QD_CU_F32(a->X), .lda = a->ldx, .ldb = a->ldx, .C = H, .ldc = K,
                             .alpha = (double)a->alpha, .beta = (double)a->beta};
        QD_CHECK(qd_cu_xgemm(c, &g));
        return mirror(c, H, K);
    }
    if (c->math == QD_CU_BF16 || c->math == QD_CU_TF32) {
        QD_CHECK(tc_strips(c, a));
    } else {
        /* column-major: X row-major [T, K] is X^T [K, T] with ld ldx; C = alpha X^T X, lower col-major */
        QD_CUBLAS_CHECK(cublasSsyrk(c->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)K, (int)a->T, &a->alpha,
                                    QD_CU_F32(a->X), (int)a->ldx, &a->beta, H, (int)K));
    }
    if (!a->upper_only) QD_CHECK(mirror(c, H, K));
    return QD_OK;
}

__global__ void k_diag_add(float *A, size_t n, float s, const float *v) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        A[i * n + i] += s + (v ? v[i] : 0.0f);
}

extern "C" qd_status qd_cu_diag_add(qd_backend_t be, const struct qd_diag_add_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    const float *v = a->v ? (const float *)a->v->ptr + a->v_off : NULL;
    k_diag_add<<<qd_cu_blocks(a->n, 256), 256, 0, c->stream>>>(QD_CU_F32(a->A), a->n, a->scalar, v);
    QD_LAUNCH_CHECK("diag_add");
    return QD_OK;
}
