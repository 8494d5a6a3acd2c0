/* SPDX-License-Identifier: MIT
 * backend-cuda.cu - the CUDA backend's table, its creation (stream, cuBLAS, cuSOLVER), buffers
 * (a caching pool over cudaMalloc, never managed memory) and the scratch buffer. The ops live one family per .cu. */
#include <stdlib.h>
#include <string.h>

#include "cuda-common.cuh"

extern "C" {
#include "qd-backend-cuda.h"
#include "qd-param.h"
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

/* ---- the pool: a free list by size plus the live blocks' sizes ----
 * Sizes are rounded (512 B below 1 MiB, 2 MiB above) so that the same shapes reuse each other's
 * blocks; a request takes the smallest free block that is at least as large and at most 1/8 larger.
 * When cudaMalloc fails, every free block is returned to the device and the allocation retried.
 * A request of QD_CU_POOL_BIG or more that no free block serves also returns the free blocks first:
 * cached blocks of other sizes cannot serve it, and keeping them would make the pool hold the sum of
 * each size's peak rather than the peak of the sum (70B: the fp64 chol_inv copy of the down_proj
 * Hessian, 6.6 GB, beside the freed buffers of earlier layers). The cost is a synchronise and a few
 * cudaFree/cudaMalloc when a large size is not cached: in the first block, and in every 70B block, where
 * the fp64 copies for K = 8192 and K = 28672 evict each other (milliseconds against ~12 s a block). */
#define QD_CU_POOL_BIG ((size_t)256 << 20)
struct cu_block {
    void *p;
    size_t bytes;
};
struct qd_cu_pool {
    struct cu_block *live, *free;
    size_t nlive, caplive, nfree, capfree;
    size_t reserved, peak; /* bytes held from the device (live + free + scratch), and the most held */
};

static size_t round_bytes(size_t b) {
    size_t q = b < (1u << 20) ? 512 : (2u << 20);
    return (b + q - 1) / q * q;
}

static int push(struct cu_block **a, size_t *n, size_t *cap, struct cu_block b) {
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        struct cu_block *t = (struct cu_block *)realloc(*a, nc * sizeof *t);
        if (!t) return 0;
        *a = t;
        *cap = nc;
    }
    (*a)[(*n)++] = b;
    return 1;
}

static void note_reserved(struct qd_cu_pool *pl, size_t add) {
    pl->reserved += add;
    if (pl->reserved > pl->peak) pl->peak = pl->reserved;
}

/* every cached free block back to the device (the stream first finishes what may still use them) */
static void pool_trim(struct qd_cuda_ctx *c) {
    struct qd_cu_pool *pl = c->pool;
    if (!pl->nfree) return;
    cudaStreamSynchronize(c->stream);
    for (size_t i = 0; i < pl->nfree; i++) {
        cudaFree(pl->free[i].p);
        pl->reserved -= pl->free[i].bytes;
    }
    pl->nfree = 0;
}

qd_status qd_cu_pool_alloc(struct qd_cuda_ctx *c, size_t bytes, void **out) {
    struct qd_cu_pool *pl = c->pool;
    size_t want = round_bytes(bytes ? bytes : 1), best = (size_t)-1;
    for (size_t i = 0; i < pl->nfree; i++) {
        size_t b = pl->free[i].bytes;
        if (b >= want && b - want <= want / 8 && (best == (size_t)-1 || b < pl->free[best].bytes)) best = i;
    }
    struct cu_block blk;
    if (best != (size_t)-1) {
        blk = pl->free[best];
        pl->free[best] = pl->free[--pl->nfree];
    } else {
        if (want >= QD_CU_POOL_BIG) pool_trim(c);
        cudaError_t e = cudaMalloc(&blk.p, want);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            pool_trim(c);
            e = cudaMalloc(&blk.p, want);
        }
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return qd_fail(QD_ERR_NOMEM, "cuda backend: device %d: cudaMalloc of %zu bytes failed (%.2f GB held): %s",
                           c->device, want, pl->reserved / 1e9, cudaGetErrorString(e));
        }
        blk.bytes = want;
        note_reserved(pl, want);
    }
    if (!push(&pl->live, &pl->nlive, &pl->caplive, blk)) {
        cudaStreamSynchronize(c->stream);
        cudaFree(blk.p);
        pl->reserved -= blk.bytes;
        return qd_fail(QD_ERR_NOMEM, "cuda backend: out of host memory for the buffer table");
    }
    *out = blk.p;
    return QD_OK;
}

void qd_cu_pool_free(struct qd_cuda_ctx *c, void *p) {
    struct qd_cu_pool *pl = c->pool;
    if (!p) return;
    for (size_t i = pl->nlive; i-- > 0;) {
        if (pl->live[i].p != p) continue;
        struct cu_block blk = pl->live[i];
        pl->live[i] = pl->live[--pl->nlive];
        if (!push(&pl->free, &pl->nfree, &pl->capfree, blk)) { /* no room to cache it: give it back */
            cudaStreamSynchronize(c->stream);
            cudaFree(blk.p);
            pl->reserved -= blk.bytes;
        }
        return;
    }
    /* not ours: cannot happen through the interface; free it the plain way */
    cudaStreamSynchronize(c->stream);
    cudaFree(p);
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
        c->pool->reserved -= c->ws_bytes;
        c->ws = NULL;
        c->ws_bytes = 0;
    }
    cudaError_t e = cudaMalloc(&c->ws, want);
    if (e != cudaSuccess) { /* the pool's cached blocks may be what is in the way */
        (void)cudaGetLastError();
        pool_trim(c);
        e = cudaMalloc(&c->ws, want);
    }
    if (e != cudaSuccess) {
        c->ws = NULL;
        (void)cudaGetLastError();
        return qd_fail(QD_ERR_NOMEM, "cuda backend: device %d: no memory for %zu bytes of scratch (%s)", c->device,
                       want, cudaGetErrorString(e));
    }
    c->ws_bytes = want;
    note_reserved(c->pool, want);
    *out = c->ws;
    return QD_OK;
}

static void cu_free(qd_backend_t be) {
    struct qd_cuda_ctx *c = qd_cu(be);
    if (!c) return;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->ws) cudaFree(c->ws);
    if (c->pool) {
        for (size_t i = 0; i < c->pool->nlive; i++) cudaFree(c->pool->live[i].p);
        for (size_t i = 0; i < c->pool->nfree; i++) cudaFree(c->pool->free[i].p);
        free(c->pool->live);
        free(c->pool->free);
        free(c->pool);
    }
    if (c->flag) cudaFree(c->flag);
    for (int i = 0; i < 2; i++) {
        if (c->stage[i]) cudaFreeHost(c->stage[i]);
        if (c->stage_ev[i]) cudaEventDestroy(c->stage_ev[i]);
    }
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
    QD_CHECK(qd_cu_pool_alloc(c, n * 4, &p));
    cudaError_t e = cudaMemsetAsync(p, 0, n * 4, c->stream); /* buffers start zeroed (qd-backend.h) */
    if (e != cudaSuccess) {
        qd_cu_pool_free(c, p);
        return qd_fail(QD_ERR_CUDA, "cuda backend: cudaMemsetAsync of a new buffer failed: %s", cudaGetErrorString(e));
    }
    *ptr = p;
    return QD_OK;
}

/* back to the pool, without waiting: ops still queued that read the buffer run before any op of a
 * later owner (one stream) */
static void cu_buf_free(qd_backend_t be, void *ptr) { qd_cu_pool_free(qd_cu(be), ptr); }

static qd_status cu_mem_info(qd_backend_t be, struct qd_mem_info *out) {
    struct qd_cuda_ctx *c = qd_cu(be);
    size_t fr = 0, tot = 0;
    QD_CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
    out->free = fr;
    out->total = tot;
    out->reserved = c->pool->reserved;
    out->reserved_peak = c->pool->peak;
    return QD_OK;
}

static qd_status cu_stream(qd_backend_t be, void **stream) {
    if (stream) *stream = (void *)qd_cu(be)->stream;
    return QD_OK;
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
    .symmetrize = qd_cu_symmetrize,
    .diag_add = qd_cu_diag_add,
    .acc64 = qd_cu_acc64,
    .chol_inv = qd_cu_chol_inv,
    .permute = qd_cu_permute,
    .ewise = qd_cu_ewise,
    .rows = qd_cu_rows,
    .rmsnorm = qd_cu_rmsnorm,
    .rope = qd_cu_rope,
    .attention = qd_cu_attention,
    .cross_entropy = qd_cu_cross_entropy,
    .reduce = qd_cu_reduce,
    .colstat = qd_cu_colstat,
    .quantize = qd_cu_quantize,
    .gptq_sweep = qd_cu_gptq_sweep,
    .awq_clip = qd_cu_awq_clip,
    .fp8_dequant = qd_cu_fp8_dequant,
    .u8_codes = qd_cu_u8_codes,
    .mem_info = cu_mem_info,
    .stream = cu_stream,
};

static qd_status cu_init(struct qd_cuda_ctx *c) {
    c->pool = (struct qd_cu_pool *)calloc(1, sizeof *c->pool);
    if (!c->pool) return qd_fail(QD_ERR_NOMEM, "cuda backend: out of memory for its buffer pool");
    QD_CUDA_CHECK(cudaSetDevice(c->device));
    QD_CUDA_CHECK(cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, c->device));
    QD_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    QD_CUBLAS_CHECK(cublasCreate(&c->blas));
    QD_CUBLAS_CHECK(cublasSetStream(c->blas, c->stream));
    QD_CUBLAS_CHECK(cublasSetMathMode(c->blas, c->math == QD_CU_FP32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_TF32_TENSOR_OP_MATH));
    QD_CUSOLVER_CHECK(cusolverDnCreate(&c->solver));
    QD_CUSOLVER_CHECK(cusolverDnSetStream(c->solver, c->stream));
    QD_CUDA_CHECK(cudaMalloc((void **)&c->flag, sizeof(int)));
    for (int i = 0; i < 2; i++) QD_CUDA_CHECK(cudaEventCreateWithFlags(&c->stage_ev[i], cudaEventDisableTiming));
    return QD_OK;
}

extern "C" qd_status qd_backend_cuda_create(int device, qd_backend_t *out) {
    const char *m = qd_param_str(QD_PARAM_CUDA_MATH);
    qd_math math = QD_MATH_FP32;
    if (m && *m && !strcmp(m, "tf32"))
        math = QD_MATH_TF32;
    else if (m && *m && !strcmp(m, "bf16"))
        math = QD_MATH_BF16;
    else if (m && *m && strcmp(m, "fp32"))
        return qd_fail(QD_ERR_USAGE, "cuda backend: QD_CUDA_MATH=%s (expected fp32, tf32 or bf16)", m);
    return qd_backend_cuda_create_math(device, math, out);
}

extern "C" qd_status qd_backend_cuda_create_math(int device, qd_math math, qd_backend_t *out) {
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
    c->math = math == QD_MATH_BF16 ? QD_CU_BF16 : math == QD_MATH_TF32 ? QD_CU_TF32 : QD_CU_FP32;
    const char *at = qd_param_str(QD_PARAM_CUDA_ATTN); /* bf16 math picks the tensor-core attention unless fp32 */
    if (at && *at && strcmp(at, "fp32") && strcmp(at, "auto")) {
        free(c);
        return qd_fail(QD_ERR_USAGE, "cuda backend: QD_CUDA_ATTN=%s (expected fp32 or auto)", at);
    }
    c->attn_fp32 = at && !strcmp(at, "fp32");
    int tile = 0;
    qd_status pst = qd_param_posint(QD_PARAM_HESS_TILE, 1 << 20, &tile);
    if (pst != QD_OK) {
        free(c);
        return pst;
    }
    c->hess_tile = tile ? (size_t)tile : 1024;
    qd_status st = cu_init(c);
    if (st == QD_OK) st = qd_backend_new(&cuda_iface, c, out);
    if (st != QD_OK) {
        struct qd_backend tmp = {&cuda_iface, c, QD_NUMERICS_FAST, NULL};
        cu_free(&tmp);
    }
    return st;
}
