/* SPDX-License-Identifier: MIT
 * qd-fp8.c - E4M3 encode (round to nearest even, saturating) and decode (qd-fp8.h). */
#include "qd-fp8.h"

#include <math.h>
#include <string.h>

uint8_t qd_f32_to_e4m3(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return sign | 0x7F;      /* NaN */
    if (u >= 0x43e00000u) return sign | 0x7E;     /* >= 448 (and Inf): saturate */
    if (u < 0x3c800000u) {                        /* below 2^-6: subnormal, a multiple of 2^-9 */
        float a;
        memcpy(&a, &u, sizeof a);
        /* a * 512 is exact (a power of two) and below 8; the ties-to-even rounding of the default mode
         * gives m in 0..8, and 8 is the encoding of 2^-6 itself */
        return sign | (uint8_t)nearbyintf(a * 512.0f);
    }
    /* normal: keep 3 of the 23 mantissa bits, ties to even; a carry moves into the exponent */
    uint32_t r = (u + 0x7ffffu + ((u >> 20) & 1u)) >> 20;
    r -= (127u - 7u) << 3; /* rebias the exponent: 127 -> 7 */
    if (r > 0x7Eu) r = 0x7Eu; /* unreachable below 448, kept as the saturation's second line */
    return sign | (uint8_t)r;
}

float qd_e4m3_to_f32(uint8_t b) {
    uint32_t e = (b >> 3) & 15u, m = b & 7u, sign = (uint32_t)(b & 0x80) << 24;
    if (e == 15 && m == 7) return NAN;
    float v;
    if (e) { /* 1.m x 2^(e-7): the float's own fields, exact */
        uint32_t u = sign | ((e + 127u - 7u) << 23) | (m << 20);
        memcpy(&v, &u, sizeof v);
        return v;
    }
    v = (float)m * (1.0f / 512.0f); /* subnormal: m x 2^-9, exact */
    return sign ? -v : v;
}
