/* SPDX-License-Identifier: MIT
 * cuda-common.cuh - internal to kernels/cuda: the backend context, the check macros over
 * QD_FOREIGN_CHECK (CUDA runtime, cuBLAS, cuSOLVER) and the entries of the op table, one .cu per op
 * family (memory.cu, gemm.cu, hessian.cu, cholesky.cu, ewise.cu, reduce.cu, norm.cu, rope.cu,
 * attention.cu, xent.cu, quantize.cu, gptq-sweep.cu, awq.cu, codes.cu, fp8.cu; exact numerics in
 * gemm-exact.cu and attention-exact.cu, the bf16 attention in attention-tc.cu); backend-cuda.cu
 * holds the table, the context's creation, the buffer pool and the scratch buffer.
 *
 * Everything runs in issue order on the context's one stream; ops that return host values
 * synchronize it. Scratch memory (qd_cu_ws) is one growing device buffer reused by consecutive ops:
 * stream order makes the reuse safe, and growing it synchronizes first.
 */
#ifndef QD_CUDA_COMMON_CUH
#define QD_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <stdint.h>

extern "C" {
#include "qd-backend-impl.h"
#include "qd-check.h"
#include "qd-log.h"
}

/* Math of the fp32 GEMM family (gemm, hessian; the sweep's lazy update takes FP32 or TF32):
 * FP32 (default, what the equality test runs), TF32 tensor cores, or BF16 operands with fp32
 * accumulation. Chosen once at creation (--math; qd_math in qd-backend.h). */
enum qd_cu_math { QD_CU_FP32 = 0, QD_CU_TF32 = 1, QD_CU_BF16 = 2 };

struct qd_cuda_ctx {
    int device;
    int sm_count;
    enum qd_cu_math math;
    size_t hess_tile; /* columns per GEMM of the tf32/bf16 Hessian's triangle (QD_HESS_TILE) */
    int attn_fp32; /* QD_CUDA_ATTN=fp32: keep the CUDA-core attention kernel under QD_CUDA_MATH=bf16 */
    cudaStream_t stream;
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    void *ws;        /* scratch, ws_bytes long */
    size_t ws_bytes;
    int *flag;       /* 1 device int: cuSOLVER info, kernel error flags */
    /* pinned host staging (memory.cu): two halves of QD_CU_STAGE bytes, allocated on first use, and the
     * events that say when the device has finished with each */
    void *stage[2];
    cudaEvent_t stage_ev[2];
    struct qd_cu_pool *pool; /* backend-cuda.cu: freed buffers kept for reuse, byte counts */
};

static inline struct qd_cuda_ctx *qd_cu(qd_backend_t be) { return (struct qd_cuda_ctx *)be->ctx; }

static inline const char *qd_cuda_err_str(int rc) { return cudaGetErrorString((cudaError_t)rc); }
static inline const char *qd_cublas_err_str(int rc) { return cublasGetStatusString((cublasStatus_t)rc); }
const char *qd_cusolver_err_str(int rc);

#define QD_CUDA_CHECK(call) QD_FOREIGN_CHECK(call, cudaSuccess, qd_cuda_err_str, QD_ERR_CUDA)
#define QD_CUBLAS_CHECK(call) QD_FOREIGN_CHECK(call, CUBLAS_STATUS_SUCCESS, qd_cublas_err_str, QD_ERR_CUDA)
#define QD_CUSOLVER_CHECK(call) QD_FOREIGN_CHECK(call, CUSOLVER_STATUS_SUCCESS, qd_cusolver_err_str, QD_ERR_CUDA)
/* after every kernel launch */
#define QD_LAUNCH_CHECK(name) QD_FOREIGN_CHECK(cudaGetLastError(), cudaSuccess, qd_cuda_err_str, QD_ERR_CUDA)

/* Device memory from the backend's pool (backend-cuda.cu): a freed block goes back to the pool, not
 * to cudaFree, so a block loop that frees and allocates the same sizes does no cudaMalloc/cudaFree
 * (cudaFree synchronizes the device). Reuse needs no synchronization: every op runs on the one
 * stream, so work queued on the old owner finishes before work of the new owner starts. */
qd_status qd_cu_pool_alloc(struct qd_cuda_ctx *c, size_t bytes, void **out);
void qd_cu_pool_free(struct qd_cuda_ctx *c, void *p);

/* Host <-> device copies of pageable host memory through the pinned staging halves, in chunks of
 * QD_CU_STAGE bytes that alternate between them, so that the host's memcpy of one chunk overlaps the
 * DMA of the other. h2d returns once src has been read (the last DMAs may still run, in stream order);
 * d2h returns when dst is complete. Small copies go straight through cudaMemcpyAsync. */
#define QD_CU_STAGE ((size_t)32 << 20)
qd_status qd_cu_h2d(struct qd_cuda_ctx *c, void *dst, const void *src, size_t bytes);
qd_status qd_cu_d2h(struct qd_cuda_ctx *c, void *dst, const void *src, size_t bytes);

/* At least `bytes` of scratch (contents undefined), valid until the next qd_cu_ws call. */
qd_status qd_cu_ws(struct qd_cuda_ctx *c, size_t bytes, void **out);

static inline unsigned qd_cu_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535u * 32u ? 65535u * 32u : (b ? b : 1));
}

#define QD_CU_F32(r) ((float *)(r).buf->ptr + (r).off)
#define QD_CU_I32(r) ((int32_t *)(r).buf->ptr + (r).off)

/* fp32 row-major GEMM on raw device pointers (the sweep and awq_clip call it with their scratch):
 * C[M,N] = alpha op(A) op(B) + beta C with the context's math (BF16 falls back to TF32 here, no scratch). */
qd_status qd_cu_sgemm(struct qd_cuda_ctx *c, int ta, int tb, size_t M, size_t N, size_t K, float alpha,
                      const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);

/* attention-tc.cu: the bf16 tensor-core attention; *done = 0 (nothing launched) for shapes it does
 * not take (head_dim other than 64/128, q/k/v not 16-byte aligned) */
qd_status qd_cu_attention_tc(struct qd_cuda_ctx *c, const struct qd_attention_args *a, int *done);

extern "C" {
qd_status qd_cu_upload(qd_backend_t be, const struct qd_upload_args *a);
qd_status qd_cu_download(qd_backend_t be, const struct qd_download_args *a);
qd_status qd_cu_copy(qd_backend_t be, const struct qd_copy_args *a);
qd_status qd_cu_fill(qd_backend_t be, const struct qd_fill_args *a);
qd_status qd_cu_permute(qd_backend_t be, const struct qd_permute_args *a);
qd_status qd_cu_gemm(qd_backend_t be, const struct qd_gemm_args *a);
qd_status qd_cu_hessian(qd_backend_t be, const struct qd_hessian_args *a);
qd_status qd_cu_symmetrize(qd_backend_t be, const struct qd_symmetrize_args *a);
qd_status qd_cu_diag_add(qd_backend_t be, const struct qd_diag_add_args *a);
qd_status qd_cu_acc64(qd_backend_t be, const struct qd_acc64_args *a);
qd_status qd_cu_chol_inv(qd_backend_t be, const struct qd_chol_inv_args *a);
qd_status qd_cu_ewise(qd_backend_t be, const struct qd_ewise_args *a);
qd_status qd_cu_rows(qd_backend_t be, const struct qd_rows_args *a);
qd_status qd_cu_reduce(qd_backend_t be, const struct qd_reduce_args *a);
qd_status qd_cu_colstat(qd_backend_t be, const struct qd_colstat_args *a);
qd_status qd_cu_rmsnorm(qd_backend_t be, const struct qd_rmsnorm_args *a);
qd_status qd_cu_rope(qd_backend_t be, const struct qd_rope_args *a);
qd_status qd_cu_attention(qd_backend_t be, const struct qd_attention_args *a);
qd_status qd_cu_cross_entropy(qd_backend_t be, const struct qd_xent_args *a);
qd_status qd_cu_quantize(qd_backend_t be, const struct qd_quantize_args *a);
qd_status qd_cu_gptq_sweep(qd_backend_t be, const struct qd_gptq_sweep_args *a);
qd_status qd_cu_awq_clip(qd_backend_t be, const struct qd_awq_clip_args *a);
qd_status qd_cu_u8_codes(qd_backend_t be, const struct qd_u8_codes_args *a);
qd_status qd_cu_fp8_dequant(qd_backend_t be, const struct qd_fp8_dequant_args *a);
}

#endif
