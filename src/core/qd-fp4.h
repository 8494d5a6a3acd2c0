/* SPDX-License-Identifier: MIT
 * qd-fp4.h - the OCP MX element and scale types the FP4 schemes store (qd-scheme.h):
 *
 * E2M1 (FP4): 1 sign, 2 exponent (bias 1), 1 mantissa bit, held in the low nibble; magnitudes
 *   0, 0.5, 1, 1.5, 2, 3, 4, 6 (codes 0..7), bit 3 the sign; no Inf/NaN. The encoder rounds to
 *   nearest, ties to the even code, and saturates at +-6, as compressed-tensors' cast_to_fp4 (the
 *   torch fallback: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4). The sign
 *   of a negative value that rounds to zero is kept (code 8), as its pack_fp4_to_uint8
 *   (torch.signbit) does; -0.0 and NaN give code 0.
 * E8M0 (MX scale): a biased exponent byte, 2^(b - 127); 255 is NaN. The MX scale of a group is the
 *   power of two compressed-tensors' generate_mx_scales gives: its maximum rounded to a power of two
 *   (up when the mantissa is >= 1.75, 2^(e+1) for m in [1.75, 2)), times 2^-2 (E2M1's largest
 *   power of two, floor(log2 6)); clamped to the byte's range.
 * Both directions are exact functions of the bits, the same on every machine.
 */
#ifndef QD_FP4_H
#define QD_FP4_H

#include <stdint.h>

#include "qd-dtype.h"

#define QD_E2M1_MAX 6.0f

uint8_t qd_f32_to_e2m1(float x);  /* code 0..15 */

/* qd_f32_to_e2m1 inline, for the hot loops: the code counts the midpoints below |x| (a midpoint that
 * |x| equals counts when the code above it is the even one: 0.75, 1.75, 3.5), so no branch */
static inline uint8_t qd_e2m1_encode(float x) {
    float a = x < 0 ? -x : x; /* NaN: every comparison false, code 0 */
    uint8_t c = (uint8_t)((a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) +
                          (a > 5.0f));
    return (uint8_t)((x < 0 ? 8 : 0) | c); /* -0.0 gives 0: compressed-tensors' torch.sign(-0.0) is 0 */
}
float qd_e2m1_to_f32(uint8_t c);  /* low nibble only */
/* the E8M0 byte of the MX scale of a group whose largest magnitude is amax (finite, >= 0);
 * amax 0 gives 0 (2^-127: every code of the group is then 0) */
uint8_t qd_mx_scale_e8m0(float amax);
/* qd_e8m0_to_f32 (qd-dtype.h) decodes the byte: 2^(b - 127), NaN for 255 */

#endif
