/* SPDX-License-Identifier: MIT
 * scale-stored.cuh - qd_scale_stored_dev: the device quantizer's copy of qd_scale_stored
 * (kernels/cpu/quant.c, contract in kernels/qd-backend.h): a found scale rounded to nearest even in
 * F16 / BF16 and back, an underflow to 0 giving the dtype's smallest positive value (F16 2^-24, BF16
 * FLT_MIN), NaN or an overflow to Inf keeping s, any other dtype keeping s. __host__ __device__ so
 * that tests/kernels/test-scale-stored-host.cu checks it on the host (no GPU) against the CPU's
 * function and against cuda_fp16.h / cuda_bf16.h's conversions. */
#ifndef QD_SCALE_STORED_CUH
#define QD_SCALE_STORED_CUH

#include <math.h>
#include <stdint.h>

#include "f32-bits.cuh"

extern "C" {
#include "qd-dtype.h"
}

/* The bit operations of qd_f32_to_f16 / qd_f32_to_bf16 (src/core/qd-dtype.c) with the conversion back
 * folded in. The two products scale by powers of two (exact) and stand alone, so no FMA can form. */
__host__ __device__ __forceinline__ float qd_scale_stored_dev(qd_dtype dt, float s) {
    uint32_t u = qd_f32_bits(s), r;
    if (dt == QD_DT_BF16) {
        if ((u & 0x7fffffffu) > 0x7f800000u) return s;
        r = ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) << 16;
        if ((r & 0x7fffffffu) >= 0x7f800000u) return s;
        if ((r & 0x7fffffffu) == 0) return 1.17549435e-38f; /* FLT_MIN */
        return qd_f32_of_bits(r);
    }
    if (dt != QD_DT_F16) return s;
    uint32_t au = u & 0x7fffffffu;
    if (au >= 0x477ff000u) return s; /* NaN, or >= 65520: Inf in F16 */
    float out;
    if (au < 0x38800000u) { /* an F16 subnormal or 0: a multiple of 2^-24 */
        float m = rintf(qd_f32_of_bits(au) * 16777216.0f);
        out = m * 5.9604644775390625e-8f; /* exact: m <= 1024 */
    } else { /* round the fp32 bits to the F16 mantissa's 10 bits in place: the exponents agree */
        out = qd_f32_of_bits(((au + 0xfffu + ((au >> 13) & 1u)) >> 13) << 13);
    }
    if (out == 0.0f) return 5.9604644775390625e-8f; /* 2^-24 */
    return (u & 0x80000000u) ? -out : out;
}

#endif
