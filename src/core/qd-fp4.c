/* SPDX-License-Identifier: MIT
 * qd-fp4.c - E2M1 encode / decode and the E8M0 MX scale (qd-fp4.h). */
#include "qd-fp4.h"

#include <math.h>
#include <string.h>

static const float e2m1_values[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

uint8_t qd_f32_to_e2m1(float x) {
    if (isnan(x)) return 0;
    uint8_t sign = x < 0 ? 8 : 0; /* -0.0 gives 0: compressed-tensors' torch.sign(-0.0) is 0 */
    float a = fabsf(x);
    /* the midpoints between neighbours; a tie goes to the even code (0, 2, 4, 6: magnitudes 0, 1, 2, 4) */
    uint8_t c;
    if (a <= 0.25f) c = 0;
    else if (a < 0.75f) c = 1;
    else if (a <= 1.25f) c = 2;
    else if (a < 1.75f) c = 3;
    else if (a <= 2.5f) c = 4;
    else if (a < 3.5f) c = 5;
    else if (a <= 5.0f) c = 6;
    else c = 7;
    return sign | c;
}

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
