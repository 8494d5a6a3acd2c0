/* SPDX-License-Identifier: MIT
 * qd-scheme.h - what a quantized Linear's codes mean and which activation quantization its checkpoint
 * declares (docs/formats.md "Schemes"):
 *   wna16       integer weights only (--bits, --group-size, --sym): codes 0..2^b-1, (code - zero) * scale
 *   fp8-dynamic e4m3 weights, one fp32 scale per output row (amax / 448); activations fp8, dynamic per
 *               token (compressed-tensors float-quantized, strategy channel / token); RTN or GPTQ
 *   fp8-block   e4m3 weights, one scale per 128 x 128 block; activations fp8, dynamic per group of 128
 *               (strategy block [128, 128] / group 128: the DeepSeek-V3 layout)
 *   w8a8-int8   int8 symmetric per-channel weights (codes as wna16 with 8 bits, zero 128); activations
 *               int8, dynamic per token (compressed-tensors int-quantized)
 *   fp8-static  e4m3 weights, one scale per tensor (amax / 448); activations fp8 with one static scale
 *               per tensor from the calibration (qd_qlinear.input_scale): llm-compressor's preset FP8
 * fp8 codes are E4M3 bytes (qd-fp8.h) and dequantise as e4m3(code) * scale, zeros 0.
 */
#ifndef QD_SCHEME_H
#define QD_SCHEME_H

typedef enum {
    QD_SCHEME_WNA16 = 0, QD_SCHEME_FP8_DYNAMIC, QD_SCHEME_FP8_BLOCK, QD_SCHEME_W8A8_INT8, QD_SCHEME_FP8_STATIC,
    QD_SCHEME_LAST = QD_SCHEME_FP8_STATIC /* the staging's bound on a scheme attribute */
} qd_scheme;

#define QD_SCHEME_CHOICES "wna16|fp8-dynamic|fp8-block|w8a8-int8|fp8-static"
#define QD_FP8_BLOCK_SIZE 128 /* fp8-block: weight blocks of 128 x 128, activation groups of 128 */

const char *qd_scheme_name(qd_scheme s);
/* 0 on success, -1 for a name not in QD_SCHEME_CHOICES */
int qd_scheme_parse(const char *name, qd_scheme *out);
int qd_scheme_is_fp8(qd_scheme s);

#endif
