/* SPDX-License-Identifier: MIT
 * f32-bits.cuh - an fp32's bits and back, __host__ __device__: the intrinsics on the device, memcpy on
 * the host, so that the pure arithmetic headers (scale-stored.cuh, fp-codes.cuh) also build for the
 * host tests (tests/kernels/test-*-host.cu). */
#ifndef QD_F32_BITS_CUH
#define QD_F32_BITS_CUH

#include <stdint.h>
#include <string.h>

__host__ __device__ __forceinline__ uint32_t qd_f32_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

__host__ __device__ __forceinline__ float qd_f32_of_bits(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

#endif
