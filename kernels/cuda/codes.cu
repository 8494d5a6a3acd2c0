/* SPDX-License-Identifier: MIT
 * codes.cu - the optional u8_codes op: int32 codes packed to bytes on the device (so only N*K bytes
 * cross PCIe to the host, not 4 N*K), and the dequantization of byte codes into a block's fp32 weight
 * (so installing a quantized Linear uploads bytes instead of a host-dequantized fp32 matrix). */
#include "cuda-common.cuh"

/* one thread per output element: four codes -> one little-endian word */
__global__ void k_pack_u8(uint32_t *dst, const int32_t *src, size_t n) {
    size_t words = (n + 3) / 4;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < words; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t w = 0;
        for (size_t b = 0; b < 4 && 4 * i + b < n; b++) w |= ((uint32_t)src[4 * i + b] & 0xffu) << (8 * b);
        dst[i] = w;
    }
}

/* W = (float)(code - zero) * scale: one rounded multiply (__fmul_rn), the host's arithmetic */
__global__ void k_dequant_u8(float *W, const uint8_t *codes, const float *scales, const int32_t *zeros,
                             const int32_t *g_idx, size_t N, size_t K, size_t G, int *bad) {
    size_t n = N * K;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / K, k = i % K;
        int32_t g = g_idx[k];
        if (g < 0 || (size_t)g >= G) {
            *bad = 1;
            continue;
        }
        size_t gi = (size_t)g * N + r;
        W[i] = __fmul_rn(__int2float_rn((int)codes[i] - zeros[gi]), scales[gi]);
    }
}

extern "C" qd_status qd_cu_u8_codes(qd_backend_t be, const struct qd_u8_codes_args *a) {
    struct qd_cuda_ctx *c = qd_cu(be);
    if (!a->dequant) {
        k_pack_u8<<<qd_cu_blocks((a->n + 3) / 4, 256), 256, 0, c->stream>>>((uint32_t *)QD_CU_F32(a->dst),
                                                                             QD_CU_I32(a->src), a->n);
        QD_LAUNCH_CHECK("pack_u8");
        return QD_OK;
    }
    QD_CUDA_CHECK(cudaMemsetAsync(c->flag, 0, sizeof(int), c->stream));
    k_dequant_u8<<<qd_cu_blocks(a->N * a->K, 256), 256, 0, c->stream>>>(
        QD_CU_F32(a->W), (const uint8_t *)QD_CU_F32(a->codes), QD_CU_F32(a->scales), QD_CU_I32(a->zeros),
        QD_CU_I32(a->g_idx), a->N, a->K, a->G, c->flag);
    QD_LAUNCH_CHECK("dequant_u8");
    int bad = 0;
    QD_CUDA_CHECK(cudaMemcpyAsync(&bad, c->flag, sizeof(int), cudaMemcpyDeviceToHost, c->stream));
    QD_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (bad) return qd_fail(QD_ERR_INTERNAL, "cuda backend: dequant_u8: a group index is out of range");
    return QD_OK;
}
