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

/* qd-fp8-dequant.c: the one host loop that turns e4m3 codes and their scales into fp32 (the FP8 source
 * reader and the CPU backend's fp8_dequant both call it; the CUDA kernel computes the same bits).
 * out[n*K + k] = e4m3(codes[n*K + k]) * scale[(n / bn) * ceil(K / bk) + k / bk], one fp32 multiply,
 * rows split over threads (qd-rows.h). bn, bk >= 1. Returns the flat index (row order) of the first
 * NaN code (0x7F / 0xFF), whose output is NaN, or -1 when there is none. */
int64_t qd_fp8_dequant(const uint8_t *codes, const float *scale, int64_t N, int64_t K, int64_t bn, int64_t bk,
                       float *out);

#endif
