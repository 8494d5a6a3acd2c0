/* SPDX-License-Identifier: MIT
 * qd-qformat-fp8.h - Linears of an FP8 source checkpoint (quantization_config.quant_method "fp8",
 * docs/formats.md "FP8 sources"), dequantized to fp32.
 *
 * <prefix>.weight is F8_E4M3 [N, K] (torch.float8_e4m3fn). Its scale, any float dtype or F8_E8M0:
 *   block [bn, bk] (weight_block_size, compressed-tensors block_structure): <prefix>.weight_scale_inv
 *       (or .weight_scale, compressed-tensors) [ceil(N/bn), ceil(K/bk)],
 *       W[n][k] = fp8[n][k] * s[n / bn][k / bk]  (DeepSeek-V3, Qwen3-FP8; transformers finegrained_fp8)
 *   no block: <prefix>.weight_scale_inv (transformers per-tensor) or <prefix>.weight_scale (vLLM / AutoFP8,
 *       compressed-tensors tensor / channel), one value ([] or [1]) or one per output row ([N] or [N, 1]),
 *       W[n][k] = fp8[n][k] * s[n or 0]
 * A missing scale, a scale of another shape, a non-finite or negative scale and a NaN weight code each
 * fail with one line naming the tensor (QD_ERR_FORMAT).
 */
#ifndef QD_QFORMAT_FP8_H
#define QD_QFORMAT_FP8_H

#include <stdint.h>

#include "qd-safetensors.h"
#include "qd-status.h"

/* Headers only: the weight's dtype and shape (into N, K) and its scale's name, dtype and shape. */
qd_status qd_fp8_linear_check(const qd_checkpoint *ck, const char *prefix, const int block[2], int64_t *N,
                              int64_t *K);
/* The headers as qd_fp8_linear_check, then every scale value read and checked (finite, >= 0). */
qd_status qd_fp8_scale_values_check(const qd_checkpoint *ck, const char *prefix, const int block[2]);
/* A compressed-tensors float-quantized Linear's .weight_scale values read and checked (finite, >= 0); its
 * layout is its config group's (qd_qformat_check_linear checks it). */
qd_status qd_fp8_ct_scale_values_check(const qd_checkpoint *ck, const char *prefix);
/* The fp32 weight [N][K] (malloc'ed into *w; the caller frees), after qd_fp8_linear_check. */
qd_status qd_fp8_linear_read(const qd_checkpoint *ck, const char *prefix, const int block[2], float **w,
                             int64_t *N, int64_t *K);

/* The Linear's e4m3 codes and checked scales, for a dequantization elsewhere (a backend's fp8_dequant,
 * qd-backend.h): the headers as qd_fp8_linear_check and every scale value as qd_fp8_scale_values_check,
 * the same one-line errors. codes [N][K] point into the mapped checkpoint (or a read copy); scale is fp32
 * [ceil(N/bn)][ceil(K/bk)]; weight names the weight tensor (the checkpoint's string). W[n][k] =
 * e4m3(codes[n*K + k]) * scale[(n / bn) * ceil(K / bk) + k / bk], as qd_fp8_linear_read computes it.
 * qd_fp8_codes_close frees what open allocated (safe on a zeroed or failed one). */
typedef struct qd_fp8_codes {
    const uint8_t *codes;
    float *scale;
    int64_t N, K, bn, bk;
    const char *weight;
    uint8_t *copy; /* the codes' own memory when the checkpoint is not mapped */
} qd_fp8_codes;
qd_status qd_fp8_codes_open(const qd_checkpoint *ck, const char *prefix, const int block[2], qd_fp8_codes *out);
void qd_fp8_codes_close(qd_fp8_codes *c);
/* The one-line error (QD_ERR_FORMAT) for a NaN code at flat index `at` (row order) of weight [., K]. */
qd_status qd_fp8_nan_fail(const qd_checkpoint *ck, const char *weight, int64_t K, int64_t at);

/* qd_qformat_read_linear's answer for an FP8 Linear: the weight (w NULL: the headers only) and info
 * (quantized, 8 bits, group = the block's columns or -1; may be NULL). block NULL: {0, 0}. */
struct qd_qlinear_info;
qd_status qd_fp8_linear(const qd_checkpoint *ck, const char *prefix, const int block[2], float **w, int64_t *N,
                        int64_t *K, struct qd_qlinear_info *info);

#endif
