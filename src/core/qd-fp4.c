/* SPDX-License-Identifier: MIT
 * qd-fp4.c - E2M1 encode / decode and the E8M0 MX scale (qd-fp4.h). */
#include "qd-fp4.h"

#include <math.h>
#include <string.h>

static const float e2m1_values[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

uint8_t qd_f32_to_e2m1(float x) { return qd_e2m1_encode(x); }

float qd_e2m1_to_f32(uint8_t c) {
    float v = e2m1_values[c & 7];
    return (c & 8) ? -v : v;
}

uint8_t qd_mx_scale_e8m0(float amax) {
    if (!(amax > 0)) return 0;
    uint32_t u;
    memcpy(&u, &amax, sizeof u);
    /* round_to_power_2: add a quarter of the leading mantissa bit, keep the exponent (fp32 bits) */
    u = (u + (1u << 21)) & 0x7f800000u;
    int e;
    if (u == 0) { /* a subnormal amax: its power of two from frexp (m in [0.5, 1): 2^(e-1)) */
        (void)frexpf(amax, &e);
        e -= 1;
        if (ldexpf(amax, -e) >= 1.75f) e += 1;
    } else e = (int)(u >> 23) - 127;
    e -= 2; /* floor(log2(6)) */
    int b = e + 127;
    return (uint8_t)(b < 0 ? 0 : b > 254 ? 254 : b);
}
