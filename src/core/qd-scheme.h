/* SPDX-License-Identifier: MIT
 * qd-scheme.h - what a quantized Linear's codes mean and which activation quantization its checkpoint
 * declares (docs/formats.md "Schemes"):
 *   wna16       integer weights only (--bits, --group-size, --sym): codes 0..2^b-1, (code - zero) * scale
 *   fp8-dynamic e4m3 weights, one fp32 scale per output row (amax / 448); activations fp8, dynamic per
 *               token (compressed-tensors float-quantized, strategy channel / token); RTN or GPTQ
 *   fp8-block   e4m3 weights, one scale per 128 x 128 block; activations fp8, dynamic per group of 128
 *               (strategy block [128, 128] / group 128: the DeepSeek-V3 layout); RTN or GPTQ
 *   w8a8-int8   int8 symmetric per-channel weights (codes as wna16 with 8 bits, zero 128); activations
 *               int8, dynamic per token (compressed-tensors int-quantized)
 *   fp8-static  e4m3 weights, one scale per tensor (amax / 448); activations fp8 with one static scale
 *               per tensor from the calibration (qd_qlinear.input_scale): llm-compressor's preset FP8; RTN or GPTQ
 *   nvfp4a16    e2m1 weights (qd-fp4.h) in groups of 16 along the input, one E4M3 scale per group and
 *               one fp32 global scale per Linear (448 * 6 / amax, compressed-tensors' convention); weight
 *               only (compressed-tensors nvfp4-pack-quantized, preset NVFP4A16); RTN or GPTQ
 *   mxfp4       e2m1 weights in groups of 32, one E8M0 (power of two) scale per group; weight only
 *               (mxfp4-pack-quantized, preset MXFP4A16); RTN or GPTQ
 *   mxfp4-w4a4  the same weights; activations e2m1, dynamic per group of 32 with E8M0 scales
 *               (preset MXFP4: the runtime quantizes them, no calibration); RTN or GPTQ
 *   nvfp4       nvfp4a16's weights; activations e2m1, dynamic per group of 16 with E4M3 scales under a
 *               static fp32 input_global_scale per Linear (448 * 6 / calibration amax, in
 *               qd_qlinear.input_scale): preset NVFP4, needs --calib; RTN or GPTQ
 * fp8 codes are E4M3 bytes (qd-fp8.h) and dequantise as e4m3(code) * scale, zeros 0; fp4 codes are E2M1
 * nibbles (one a byte) and dequantise as e2m1(code) * scale, zeros 0, where an nvfp4 scale is the
 * effective one, e4m3(local) / global (qd-qlinear.h).
 */
#ifndef QD_SCHEME_H
#define QD_SCHEME_H

typedef enum {
    QD_SCHEME_WNA16 = 0, QD_SCHEME_FP8_DYNAMIC, QD_SCHEME_FP8_BLOCK, QD_SCHEME_W8A8_INT8, QD_SCHEME_FP8_STATIC,
    QD_SCHEME_NVFP4A16, QD_SCHEME_MXFP4, QD_SCHEME_MXFP4_W4A4, QD_SCHEME_NVFP4
} qd_scheme;

#define QD_SCHEME_CHOICES "wna16|fp8-dynamic|fp8-block|w8a8-int8|fp8-static|nvfp4a16|mxfp4|mxfp4-w4a4|nvfp4"
#define QD_FP8_BLOCK_SIZE 128 /* fp8-block: weight blocks of 128 x 128, activation groups of 128 */
#define QD_SCHEME_LAST QD_SCHEME_NVFP4 /* the largest value a staging attribute may hold */

const char *qd_scheme_name(qd_scheme s);
/* 0 on success, -1 for a name not in QD_SCHEME_CHOICES */
int qd_scheme_parse(const char *name, qd_scheme *out);
int qd_scheme_is_fp8(qd_scheme s);
int qd_scheme_is_fp4(qd_scheme s);
int qd_scheme_is_mxfp4(qd_scheme s); /* mxfp4 or mxfp4-w4a4: E8M0 group scales */
int qd_scheme_is_nvfp4(qd_scheme s); /* nvfp4a16 or nvfp4: E4M3 group scales under an fp32 global */
/* fp8-static or nvfp4: a static per-Linear activation scale from the calibration (input_scale) */
int qd_scheme_static_act(qd_scheme s);
/* fp8 or fp4: codes are float bytes (zeros unused), not integers */
int qd_scheme_is_float(qd_scheme s);
/* the fp4 group size along the input: 16 (nvfp4a16, nvfp4), 32 (mxfp4, mxfp4-w4a4); 0 for the other schemes */
int qd_scheme_fp4_group(qd_scheme s);
/* the weight bits a scheme fixes (8, or 4 for fp4); 0 for wna16 */
int qd_scheme_bits(qd_scheme s);
/* a float scheme GPTQ can target when asked (every fp8 and fp4 scheme: the sweep rounds to the
 * scheme's grid with the scales round-to-nearest would use, fixed before it) */
int qd_scheme_gptq_targets(qd_scheme s);

#endif
