/* SPDX-License-Identifier: MIT
 * fp8.cu - fp8_dequant: an FP8 source Linear's e4m3 bytes and fp32 block scales go up through the pinned
 * staging (a quarter of the fp32 weight's bytes) and are dequantized here, in chunks of rows so that the
 * scratch stays small whatever the Linear's size. The exact decode (dev_e4m3_value, fp-codes.cuh) and
 * the one rounded multiply (__fmul_rn: never contracted) give the bits of the host loop, qd_fp8_dequant in
 * qd-fp8.h; a NaN code's W is unspecified (the op reports its index). */
#include "cuda-common.cuh"
#include "fp-codes.cuh"

/* code bytes per upload and kernel: two staging halves, so the copy of one overlaps the DMA of the other */
#define QD_CU_FP8_CHUNK ((size_t)64 << 20)
#define QD_CU_FP8_ALIGN ((size_t)256)

/* rows [row0, row0 + rows) of W: codes holds those rows only, scale the whole grid (cols per row);
 * nan receives the smallest flat index of a NaN code */
__global__ void k_fp8_dequant(float *W, const uint8_t *codes, const float *scale, size_t row0, size_t rows, size_t K,
                              size_t bn, size_t bk, size_t cols, unsigned long long *nan) {
    __shared__ float lut[256];
    for (unsigned t = threadIdx.x; t < 256; t += blockDim.x) lut[t] = dev_e4m3_value(t);
    __syncthreads();
    size_t n = rows * K, base = row0 * K;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = row0 + i / K, k = i % K;
        uint32_t c = codes[i];
        W[base + i] = __fmul_rn(lut[c], scale[(r / bn) * cols + k / bk]);
        if ((c & 0x7fu) == 0x7fu) atomicMin(nan, (unsigned long long)(base + i));
    }
}

static size_t align_up(size_t x) { return (x + QD_CU_FP8_ALIGN - 1) / QD_CU_FP8_ALIGN * QD_CU_FP8_ALIGN; }

extern "C" qd_status qd_cu_fp8_dequant(qd_backend_t be, const struct qd_fp8_dequant_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    size_t N = a->N, K = a->K, cols = (K + a->bk - 1) / a->bk, ns = (N + a->bn - 1) / a->bn * cols;
    size_t step = QD_CU_FP8_CHUNK / K ? QD_CU_FP8_CHUNK / K : 1; /* rows per chunk */
    if (step > N) step = N;
    /* scratch: the NaN index, the scales, one chunk of codes */
    size_t off_s = align_up(sizeof(unsigned long long)), off_c = off_s + align_up(ns * sizeof(float));
    void *ws;
    QD_CHECK(qd_cu_ws(c, off_c + step * K, &ws));
    unsigned long long *nan = (unsigned long long *)ws;
    float *scale = (float *)((char *)ws + off_s);
    uint8_t *codes = (uint8_t *)ws + off_c;
    QD_CUDA_CHECK(cudaMemsetAsync(nan, 0xff, sizeof *nan, c->stream));
    QD_CHECK(qd_cu_h2d(c, scale, a->scale, ns * sizeof(float)));
    float *W = QD_CU_F32(a->dst);
    /* stream order: the upload of chunk i + 1 into the same scratch waits for chunk i's kernel */
    for (size_t r0 = 0; r0 < N; r0 += step) {
        size_t rows = N - r0 < step ? N - r0 : step;
        QD_CHECK(qd_cu_h2d(c, codes, a->codes + r0 * K, rows * K));
        k_fp8_dequant<<<qd_cu_blocks(rows * K, 256), 256, 0, c->stream>>>(W, codes, scale, r0, rows, K, a->bn, a->bk,
                                                                          cols, nan);
        QD_LAUNCH_CHECK("fp8_dequant");
    }
    unsigned long long at = 0;
    QD_CUDA_CHECK(cudaMemcpyAsync(&at, nan, sizeof at, cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    *a->nan_at = at == ~0ull ? -1 : (int64_t)at;
    return QD_OK;
}
