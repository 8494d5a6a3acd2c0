/* SPDX-License-Identifier: MIT
 * memory.cu - upload (with bf16/f16/f64 -> fp32 conversion on the device), download, 2-D copy,
 * fill and the act-order gathers (permute). */
#include <cuda_fp16.h>
#include <string.h>

#include "cuda-common.cuh"

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
        /* pageable source: the copy has read it when the call returns */
        QD_CUDA_CHECK(cudaMemcpyAsync(dst, a->src, a->n * 4, cudaMemcpyHostToDevice, c->stream));
        return QD_OK;
    }
    size_t esz = qd_dtype_bits(a->src_dtype) / 8;
    void *tmp;
    QD_CHECK(qd_cu_ws(c, a->n * esz, &tmp));
    QD_CUDA_CHECK(cudaMemcpyAsync(tmp, a->src, a->n * esz, cudaMemcpyHostToDevice, c->stream));
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
    QD_CUDA_CHECK(cudaMemcpyAsync(a->dst, QD_CU_F32(a->src), a->n * 4, cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return QD_OK;
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
