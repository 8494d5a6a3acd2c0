/* SPDX-License-Identifier: MIT
 * gemm.cu - the fp32 row-major GEMM through cuBLAS (C^T = op(B)^T op(A)^T in column-major terms).
 * Math: FP32 (pedantic, no TF32: what the equality test runs), TF32, or BF16 operands converted in
 * scratch with fp32 accumulation (cublasGemmEx). */
#include <cuda_bf16.h>

#include "exact.cuh"

__global__ void k_to_bf16(__nv_bfloat16 *dst, const float *src, size_t rows, size_t cols, size_t ld) {
    size_t n = rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[ld == cols ? i : (i / cols) * ld + i % cols]); /* dense: no division */
}

qd_status qd_cu_sgemm(struct qd_cuda_ctx *c, int ta, int tb, size_t M, size_t N, size_t K, float alpha,
                      const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    QD_CUBLAS_CHECK(cublasSgemm(c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M,
                                (int)K, &alpha, B, (int)ldb, A, (int)lda, &beta, C, (int)ldc));
    return QD_OK;
}

__global__ void k_scale_mat(float *C, size_t M, size_t N, size_t ldc, float beta) {
    size_t n = M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float *p = C + (i / N) * ldc + i % N;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

extern "C" qd_status qd_cu_gemm(qd_backend_t be, const struct qd_gemm_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    float *C = QD_CU_F32(a->C);
    if (a->K == 0) {
        k_scale_mat<<<qd_cu_blocks(a->M * a->N, 256), 256, 0, c->stream>>>(C, a->M, a->N, a->ldc, a->beta);
        QD_LAUNCH_CHECK("scale");
        return QD_OK;
    }
    if (qd_cu_exact(be)) { /* the CPU backend's fixed-order fp64 GEMM (exact.cuh) */
        struct qd_cu_xg g = {.ta = a->trans_a, .tb = a->trans_b, .M = a->M, .N = a->N, .K = a->K, .A = QD_CU_F32(a->A),
                             .B = QD_CU_F32(a->B), .lda = a->lda, .ldb = a->ldb, .C = C, .ldc = a->ldc,
                             .alpha = (double)a->alpha, .beta = (double)a->beta};
        return qd_cu_xgemm(c, &g);
    }
    if (c->math != QD_CU_BF16)
        return qd_cu_sgemm(c, a->trans_a, a->trans_b, a->M, a->N, a->K, a->alpha, QD_CU_F32(a->A), a->lda,
                           QD_CU_F32(a->B), a->ldb, a->beta, C, a->ldc);
    /* bf16 operands, packed contiguous in scratch */
    size_t ar = a->trans_a ? a->K : a->M, ac = a->trans_a ? a->M : a->K;
    size_t br = a->trans_b ? a->N : a->K, bc = a->trans_b ? a->K : a->N;
    void *ws;
    size_t abytes = (ar * ac * 2 + 255) / 256 * 256;
    QD_CHECK(qd_cu_ws(c, abytes + br * bc * 2, &ws));
    __nv_bfloat16 *Ab = (__nv_bfloat16 *)ws, *Bb = (__nv_bfloat16 *)((char *)ws + abytes);
    k_to_bf16<<<qd_cu_blocks(ar * ac, 256), 256, 0, c->stream>>>(Ab, QD_CU_F32(a->A), ar, ac, a->lda);
    QD_LAUNCH_CHECK("to_bf16");
    k_to_bf16<<<qd_cu_blocks(br * bc, 256), 256, 0, c->stream>>>(Bb, QD_CU_F32(a->B), br, bc, a->ldb);
    QD_LAUNCH_CHECK("to_bf16");
    QD_CUBLAS_CHECK(cublasGemmEx(c->blas, a->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, a->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 (int)a->N, (int)a->M, (int)a->K, &a->alpha, Bb, CUDA_R_16BF, (int)bc, Ab, CUDA_R_16BF,
                                 (int)ac, &a->beta, C, CUDA_R_32F, (int)a->ldc, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
    return QD_OK;
}
