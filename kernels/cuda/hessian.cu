/* SPDX-License-Identifier: MIT
 * hessian.cu - H = beta H + alpha X^T X: cuBLAS SYRK in fp32 (then the other triangle mirrored), a full
 * TF32 GEMM under QD_CUDA_MATH=tf32 (SYRK has no tensor-core path), a bf16 GEMM with fp32 accumulation
 * under QD_CUDA_MATH=bf16; and diag_add (damping). */
#include <cuda_bf16.h>

#include "exact.cuh"

/* row-major upper = column-major lower: copy it into the row-major lower triangle */
__global__ void k_mirror_upper(float *H, size_t n) {
    size_t tot = n * n;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < tot; idx += (size_t)gridDim.x * blockDim.x) {
        size_t i = idx / n, j = idx % n;
        if (i > j) H[idx] = H[j * n + i];
    }
}

__global__ void k_scale_all(float *H, size_t n, float beta) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        H[i] = beta == 0.0f ? 0.0f : beta * H[i];
}

__global__ void k_rows_bf16(__nv_bfloat16 *dst, const float *src, size_t rows, size_t cols, size_t ld) {
    size_t n = rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[(i / cols) * ld + i % cols]);
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
        k_mirror_upper<<<qd_cu_blocks(K * K, 256), 256, 0, c->stream>>>(H, K);
        QD_LAUNCH_CHECK("mirror");
        return QD_OK;
    }
    if (c->math == QD_CU_BF16) {
        void *ws;
        QD_CHECK(qd_cu_ws(c, a->T * K * 2, &ws));
        __nv_bfloat16 *Xb = (__nv_bfloat16 *)ws;
        k_rows_bf16<<<qd_cu_blocks(a->T * K, 256), 256, 0, c->stream>>>(Xb, QD_CU_F32(a->X), a->T, K, a->ldx);
        QD_LAUNCH_CHECK("to_bf16");
        /* column-major: Xb is X^T [K, T] (ld K); H = alpha Xb Xb^T + beta H, all of it */
        QD_CUBLAS_CHECK(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)K, (int)K, (int)a->T, &a->alpha, Xb,
                                     CUDA_R_16BF, (int)K, Xb, CUDA_R_16BF, (int)K, &a->beta, H, CUDA_R_32F, (int)K,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return QD_OK;
    }
    if (c->math == QD_CU_TF32) {
        /* cuBLAS's SYRK takes no tensor cores: a full TF32 GEMM does twice the work about 8x faster */
        QD_CUBLAS_CHECK(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)K, (int)K, (int)a->T, &a->alpha,
                                     QD_CU_F32(a->X), CUDA_R_32F, (int)a->ldx, QD_CU_F32(a->X), CUDA_R_32F, (int)a->ldx,
                                     &a->beta, H, CUDA_R_32F, (int)K, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
        return QD_OK;
    }
    /* column-major: X row-major [T, K] is X^T [K, T] with ld ldx; C = alpha X^T X, lower col-major */
    QD_CUBLAS_CHECK(cublasSsyrk(c->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)K, (int)a->T, &a->alpha,
                                QD_CU_F32(a->X), (int)a->ldx, &a->beta, H, (int)K));
    k_mirror_upper<<<qd_cu_blocks(K * K, 256), 256, 0, c->stream>>>(H, K);
    QD_LAUNCH_CHECK("mirror");
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
