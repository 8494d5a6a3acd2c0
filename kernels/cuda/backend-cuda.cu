/* SPDX-License-Identifier: MIT
 * backend-cuda.cu - the CUDA backend's table, its creation (stream, cuBLAS, cuSOLVER), buffers
 * (cudaMalloc, never managed memory) and the scratch buffer. The ops live one family per .cu. */
#include <stdlib.h>
#include <string.h>

#include "cuda-common.cuh"

extern "C" {
#include "qd-backend-cuda.h"
}

const char *qd_cusolver_err_str(int rc) {
    switch ((cusolverStatus_t)rc) {
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "cuSOLVER error";
    }
}

qd_status qd_cu_ws(struct qd_cuda_ctx *c, size_t bytes, void **out) {
    if (bytes <= c->ws_bytes) {
        *out = c->ws;
        return QD_OK;
    }
    size_t want = bytes + bytes / 4 + (1u << 20);
    if (c->ws) {
        QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
        QD_CUDA_CHECK(cudaFree(c->ws));
        c->ws = NULL;
        c->ws_bytes = 0;
    }
    cudaError_t e = cudaMalloc(&c->ws, want);
    if (e != cudaSuccess) {
        c->ws = NULL;
        (void)cudaGetLastError();
        return qd_fail(QD_ERR_NOMEM, "cuda backend: device %d: no memory for %zu bytes of scratch (%s)", c->device,
                       want, cudaGetErrorString(e));
    }
    c->ws_bytes = want;
    *out = c->ws;
    return QD_OK;
}

static void cu_free(qd_backend_t be) {
    struct qd_cuda_ctx *c = qd_cu(be);
    if (!c) return;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->ws) cudaFree(c->ws);
    if (c->flag) cudaFree(c->flag);
    if (c->solver) cusolverDnDestroy(c->solver);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

static qd_status cu_synchronize(qd_backend_t be) {
    struct qd_cuda_ctx *c = qd_cu(be);
    QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return QD_OK;
}

static qd_status cu_buf_alloc(qd_backend_t be, size_t n, void **ptr) {
    struct qd_cuda_ctx *c = qd_cu(be);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, n * 4);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return qd_fail(QD_ERR_NOMEM, "cuda backend: device %d: cudaMalloc of %zu bytes failed: %s", c->device, n * 4,
                       cudaGetErrorString(e));
    }
    e = cudaMemsetAsync(p, 0, n * 4, c->stream);
    if (e != cudaSuccess) {
        cudaFree(p);
        return qd_fail(QD_ERR_CUDA, "cuda backend: cudaMemsetAsync of a new buffer failed: %s", cudaGetErrorString(e));
    }
    *ptr = p;
    return QD_OK;
}

static void cu_buf_free(qd_backend_t be, void *ptr) {
    struct qd_cuda_ctx *c = qd_cu(be);
    /* ops still queued may read the buffer: cudaFree waits for the device */
    cudaStreamSynchronize(c->stream);
    cudaFree(ptr);
}

static const struct qd_backend_i cuda_iface = {
    .name = "cuda",
    .free = cu_free,
    .synchronize = cu_synchronize,
    .buf_alloc = cu_buf_alloc,
    .buf_free = cu_buf_free,
    .upload = qd_cu_upload,
    .download = qd_cu_download,
    .copy = qd_cu_copy,
    .fill = qd_cu_fill,
    .gemm = qd_cu_gemm,
    .hessian = qd_cu_hessian,
    .diag_add = qd_cu_diag_add,
    .chol_inv = qd_cu_chol_inv,
    .permute = qd_cu_permute,
    .ewise = qd_cu_ewise,
    .rmsnorm = qd_cu_rmsnorm,
    .rope = qd_cu_rope,
    .attention = qd_cu_attention,
    .cross_entropy = qd_cu_cross_entropy,
    .reduce = qd_cu_reduce,
    .colstat = qd_cu_colstat,
    .quantize = qd_cu_quantize,
    .gptq_sweep = qd_cu_gptq_sweep,
    .awq_clip = qd_cu_awq_clip,
};

static qd_status cu_init(struct qd_cuda_ctx *c) {
    QD_CUDA_CHECK(cudaSetDevice(c->device));
    QD_CUDA_CHECK(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, c->device));
    QD_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    QD_CUBLAS_CHECK(cublasCreate(&c->blas));
    QD_CUBLAS_CHECK(cublasSetStream(c->blas, c->stream));
    QD_CUBLAS_CHECK(cublasSetMathMode(c->blas, c->math == QD_CU_FP32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_TF32_TENSOR_OP_MATH));
    QD_CUSOLVER_CHECK(cusolverDnCreate(&c->solver));
    QD_CUSOLVER_CHECK(cusolverDnSetStream(c->solver, c->stream));
    QD_CUDA_CHECK(cudaMalloc((void **)&c->flag, sizeof(int)));
    return QD_OK;
}

extern "C" qd_status qd_backend_cuda_create(int device, qd_backend_t *out) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        return qd_fail(QD_ERR_UNSUPPORTED, "cuda backend: no CUDA device (%s)",
                       e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (device < 0 || device >= count)
        return qd_fail(QD_ERR_USAGE, "cuda backend: device %d does not exist (%d devices)", device, count);
    struct qd_cuda_ctx *c = (struct qd_cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return qd_fail(QD_ERR_NOMEM, "cuda backend: out of memory for its context");
    c->device = device;
    const char *m = getenv("QD_CUDA_MATH");
    if (!m || !*m || !strcmp(m, "fp32"))
        c->math = QD_CU_FP32;
    else if (!strcmp(m, "tf32"))
        c->math = QD_CU_TF32;
    else if (!strcmp(m, "bf16"))
        c->math = QD_CU_BF16;
    else {
        free(c);
        return qd_fail(QD_ERR_USAGE, "cuda backend: QD_CUDA_MATH=%s (expected fp32, tf32 or bf16)", m);
    }
    qd_status st = cu_init(c);
    if (st == QD_OK) st = qd_backend_new(&cuda_iface, c, out);
    if (st != QD_OK) {
        struct qd_backend tmp = {&cuda_iface, c, QD_NUMERICS_FAST};
        cu_free(&tmp);
    }
    return st;
}
