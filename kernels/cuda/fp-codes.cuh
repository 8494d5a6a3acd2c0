/* SPDX-License-Identifier: MIT
 * fp-codes.cuh - the E4M3 and E2M1 codecs of the CUDA GPTQ sweep (gptq-sweep.cu), bit for bit the
 * host's (src/core/qd-fp8.c, src/core/qd-fp4.c). __host__ __device__ so that
 * tests/kernels/test-fp-codes-host.cu checks them on the host (no GPU) against the host's functions and
 * cuda_fp8.h / cuda_fp4.h's conversions. The product by 512 scales by a power of two (exact) and stands
 * alone, so no FMA can form. */
#ifndef QD_FP_CODES_CUH
#define QD_FP_CODES_CUH

#include <math.h>
#include <stdint.h>

#include "f32-bits.cuh"

/* qd_f32_to_e4m3 (src/core/qd-fp8.c): round to nearest even, saturating at 448 */
__host__ __device__ __forceinline__ uint32_t dev_e4m3(float x) {
    uint32_t u = qd_f32_bits(x), sign = (u >> 24) & 0x80u;
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return sign | 0x7Fu;
    if (u >= 0x43e00000u) return sign | 0x7Eu;
    if (u < 0x3c800000u) return sign | (uint32_t)rintf(qd_f32_of_bits(u) * 512.0f);
    uint32_t r = ((u + 0x7ffffu + ((u >> 20) & 1u)) >> 20) - ((127u - 7u) << 3);
    return sign | (r > 0x7Eu ? 0x7Eu : r);
}

/* qd_e4m3_to_f32: the NaN codes (0x7F, 0xFF: dev_e4m3 of a NaN) decode to NaN, not 480 */
__host__ __device__ __forceinline__ float dev_e4m3_value(uint32_t b) {
    int e = (b >> 3) & 15, m = b & 7;
    if (e == 15 && m == 7) return NAN;
    float v = e ? ldexpf((float)(8 + m), e - 10) : ldexpf((float)m, -9);
    return (b & 0x80u) ? -v : v;
}

/* qd_f32_to_e2m1 (src/core/qd-fp4.c): ties to the even code, saturating at 6, -0.0 -> 0 */
__host__ __device__ __forceinline__ uint32_t dev_e2m1(float x) {
    if (isnan(x)) return 0;
    uint32_t sign = x < 0.0f ? 8u : 0u;
    float a = fabsf(x);
    uint32_t c = a <= 0.25f ? 0 : a < 0.75f ? 1 : a <= 1.25f ? 2 : a < 1.75f ? 3 : a <= 2.5f ? 4 : a < 3.5f ? 5
               : a <= 5.0f ? 6 : 7;
    return sign | c;
}

__host__ __device__ __forceinline__ float dev_e2m1_value(uint32_t c) {
    const float v[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    return (c & 8u) ? -v[c & 7u] : v[c & 7u];
}

#endif
