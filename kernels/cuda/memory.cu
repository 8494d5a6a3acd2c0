/* SPDX-License-Identifier: MIT
 * memory.cu - upload (with bf16/f16/f64 -> fp32 conversion on the device), download (both through
 * the pinned staging halves), 2-D copy, fill and the act-order gathers (permute). */
#include <cuda_fp16.h>
#include <string.h>

#include "cuda-common.cuh"

/* Below this a copy goes straight from pageable memory: the staging's extra memcpy would not pay. */
#define QD_CU_STAGE_MIN ((size_t)256 << 10)

static qd_status stage_ready(struct qd_cuda_ctx *c) {
    for (int i = 0; i < 2; i++)
        if (!c->stage[i]) {
            cudaError_t e = cudaHostAlloc(&c->stage[i], QD_CU_STAGE, cudaHostAllocDefault);
            if (e != cudaSuccess) {
                c->stage[i] = NULL;
                (void)cudaGetLastError();
                return qd_fail(QD_ERR_NOMEM, "cuda backend: cudaHostAlloc of %zu bytes of pinned staging failed: %s",
                               QD_CU_STAGE, cudaGetErrorString(e));
            }
        }
    return QD_OK;
}

qd_status qd_cu_h2d(struct qd_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
    if (bytes < QD_CU_STAGE_MIN) { /* pageable source: the copy has read it when the call returns */
        QD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
        return QD_OK;
    }
    QD_CHECK(stage_ready(c));
    for (size_t off = 0, i = 0; off < bytes; off += QD_CU_STAGE, i ^= 1) {
        size_t len = bytes - off < QD_CU_STAGE ? bytes - off : QD_CU_STAGE;
        QD_CUDA_CHECK(cudaEventSynchronize(c->stage_ev[i])); /* the DMA that last read this half is done */
        memcpy(c->stage[i], (const char *)src + off, len);
        QD_CUDA_CHECK(cudaMemcpyAsync((char *)dst + off, c->stage[i], len, cudaMemcpyHostToDevice, c->stream));
        QD_CUDA_CHECK(cudaEventRecord(c->stage_ev[i], c->stream));
    }
    return QD_OK;
}

qd_status qd_cu_d2h(struct qd_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
    if (bytes < QD_CU_STAGE_MIN) {
        QD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
        QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
        return QD_OK;
    }
    QD_CHECK(stage_ready(c));
    size_t nchunk = (bytes + QD_CU_STAGE - 1) / QD_CU_STAGE;
    /* chunk k goes to half k % 2; chunk k - 1 is copied out while chunk k is in flight */
    for (size_t k = 0; k <= nchunk; k++) {
        if (k < nchunk) {
            size_t off = k * QD_CU_STAGE, len = bytes - off < QD_CU_STAGE ? bytes - off : QD_CU_STAGE;
            QD_CUDA_CHECK(cudaMemcpyAsync(c->stage[k % 2], (const char *)src + off, len, cudaMemcpyDeviceToHost,
                                          c->stream));
            QD_CUDA_CHECK(cudaEventRecord(c->stage_ev[k % 2], c->stream));
        }
        if (k > 0) {
            size_t p = k - 1, off = p * QD_CU_STAGE, len = bytes - off < QD_CU_STAGE ? bytes - off : QD_CU_STAGE;
            QD_CUDA_CHECK(cudaEventSynchronize(c->stage_ev[p % 2]));
            memcpy((char *)dst + off, c->stage[p % 2], len);
        }
    }
    return QD_OK;
}

__global__ void k_cvt_bf16(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __uint_as_float((uint32_t)src[i] << 16);
}

__global__ void k_cvt_f16(float *dst, const __half *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __half2float(src[i]);
}

__global__ void k_cvt_f64(float *dst, const double *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __double2float_rn(src[i]);
}

extern "C" qd_status qd_cu_upload(qd_backend_t be, const struct qd_upload_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    float *dst = QD_CU_F32(a->dst);
    if (a->src_dtype == QD_DT_F32 || !qd_dtype_is_float(a->src_dtype)) {
        return qd_cu_h2d(c, dst, a->src, a->n * 4);
    }
    size_t esz = qd_dtype_bits(a->src_dtype) / 8;
    void *tmp;
    QD_CHECK(qd_cu_ws(c, a->n * esz, &tmp));
    QD_CHECK(qd_cu_h2d(c, tmp, a->src, a->n * esz));
    unsigned nb = qd_cu_blocks(a->n, 256);
    switch (a->src_dtype) {
    case QD_DT_BF16: k_cvt_bf16<<<nb, 256, 0, c->stream>>>(dst, (const uint16_t *)tmp, a->n); break;
    case QD_DT_F16: k_cvt_f16<<<nb, 256, 0, c->stream>>>(dst, (const __half *)tmp, a->n); break;
    case QD_DT_F64: k_cvt_f64<<<nb, 256, 0, c->stream>>>(dst, (const double *)tmp, a->n); break;
    default:
        return qd_fail(QD_ERR_UNSUPPORTED, "cuda backend: upload from %s", qd_dtype_name(a->src_dtype));
    }
    QD_LAUNCH_CHECK("cvt");
    return QD_OK;
}

extern "C" qd_status qd_cu_download(qd_backend_t be, const struct qd_download_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    return qd_cu_d2h(c, a->dst, QD_CU_F32(a->src), a->n * 4);
}

extern "C" qd_status qd_cu_copy(qd_backend_t be, const struct qd_copy_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    if (a->rows == 1 || (a->ldd == a->cols && a->lds == a->cols)) {
        /* one contiguous run (cudaMemcpy2D caps pitches at 2 GiB, a 28672^2 Hessian is 3.3 GB) */
        QD_CUDA_CHECK(cudaMemcpyAsync(QD_CU_F32(a->dst), QD_CU_F32(a->src), a->rows * a->cols * 4,
                                      cudaMemcpyDeviceToDevice, c->stream));
        return QD_OK;
    }
    QD_CUDA_CHECK(cudaMemcpy2DAsync(QD_CU_F32(a->dst), a->ldd * 4, QD_CU_F32(a->src), a->lds * 4, a->cols * 4, a->rows,
                                    cudaMemcpyDeviceToDevice, c->stream));
    return QD_OK;
}

__global__ void k_fill(uint32_t *d, size_t n, uint32_t v) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) d[i] = v;
}

extern "C" qd_status qd_cu_fill(qd_backend_t be, const struct qd_fill_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    uint32_t bits;
    memcpy(&bits, &a->value, 4);
    if (bits == 0) {
        QD_CUDA_CHECK(cudaMemsetAsync(QD_CU_F32(a->dst), 0, a->n * 4, c->stream));
        return QD_OK;
    }
    k_fill<<<qd_cu_blocks(a->n, 256), 256, 0, c->stream>>>((uint32_t *)QD_CU_F32(a->dst), a->n, bits);
    QD_LAUNCH_CHECK("fill");
    return QD_OK;
}

__global__ void k_permute(int kind, uint32_t *d, const uint32_t *s, const int32_t *p, size_t R, size_t C, int *bad) {
    size_t n = R * C;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
        size_t r = idx / C, j = idx % C;
        size_t sr = r, sc = j;
        if (kind == QD_PERM_COLS || kind == QD_PERM_SYM) sc = (size_t)p[j];
        if (kind == QD_PERM_ROWS) sr = (size_t)p[r];
        if (kind == QD_PERM_SYM) sr = (size_t)p[r];
        if (sr >= R || sc >= C) {
            *bad = 1;
            continue;
        }
        d[idx] = s[sr * C + sc];
    }
}

extern "C" qd_status qd_cu_permute(qd_backend_t be, const struct qd_permute_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    QD_CUDA_CHECK(cudaMemsetAsync(c->flag, 0, sizeof(int), c->stream));
    k_permute<<<qd_cu_blocks(a->rows * a->cols, 256), 256, 0, c->stream>>>(
        (int)a->kind, (uint32_t *)QD_CU_F32(a->dst), (const uint32_t *)QD_CU_F32(a->src), QD_CU_I32(a->perm), a->rows,
        a->cols, c->flag);
    QD_LAUNCH_CHECK("permute");
    int bad = 0;
    QD_CUDA_CHECK(cudaMemcpyAsync(&bad, c->flag, sizeof(int), cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (bad) return qd_fail(QD_ERR_INTERNAL, "cuda backend: permute: an index is out of range");
    return QD_OK;
}
