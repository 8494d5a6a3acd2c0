/* SPDX-License-Identifier: MIT
 * qd-fp8.h - the OCP FP8 E4M3 ("e4m3fn", safetensors F8_E4M3) byte as the quantized weights store it.
 *
 * 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities, 0x7F/0xFF are NaN, largest finite
 * 448 (0x7E), smallest normal 2^-6, subnormals m * 2^-9. The encoder rounds to nearest, ties to even,
 * and SATURATES: |x| >= 448 (Inf included) gives +-448, as compressed-tensors' quantizer does (it
 * clamps to [-448, 448] before torch's float8_e4m3fn cast, which turns the rest into NaN). NaN gives
 * 0x7F (sign kept). Both directions are exact functions of the bits, the same on every machine.
 */
#ifndef QD_FP8_H
#define QD_FP8_H

#include <stdint.h>

#define QD_E4M3_MAX 448.0f

uint8_t qd_f32_to_e4m3(float x);
float qd_e4m3_to_f32(uint8_t b);

#endif
