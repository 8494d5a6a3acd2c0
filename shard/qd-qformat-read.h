/* SPDX-License-Identifier: MIT
 * qd-qformat-read.h - dequantise-on-load: the fp32 weight of any Linear of a checkpoint, whatever
 * format stores it (for `qdist eval`, `qdist inspect` and the model loader).
 *
 * Usage:
 *     qd_qformat *qf;  QD_CHECK(qd_qformat_open(model_dir, &qf));    // reads config.json
 *     float *w; int64_t N, K;
 *     QD_CHECK(qd_qformat_read_linear(qf, ckpt, "model.layers.0.mlp.down_proj", &w, &N, &K, NULL));
 *     ... free(w); qd_qformat_close(qf);
 * The checkpoint comes from qd_ckpt_open (mapped or meta-only). A plain float "<prefix>.weight" is
 * returned converted to fp32 (unquantized models, GPTQ "dynamic" "-:" modules, AWQ
 * modules_to_not_convert, compressed-tensors "ignore"). Otherwise, by the tensors present:
 *   GPTQ  <prefix>.qweight/.qzeros/.scales/.g_idx  bits = rows*32/K; v1 adds 1 to the stored zero
 *         unless quantization_config.checkpoint_format is "gptq_v2"
 *   AWQ   <prefix>.qweight/.qzeros/.scales (no g_idx, quant_method "awq")  4-bit, group = K/G
 *   compressed-tensors pack-quantized  <prefix>.weight_packed/.weight_scale/.weight_shape
 *         [/.weight_zero_point][/.weight_g_idx], dense little-endian stream (element i at bit i*b),
 *         bits and group size from the config group that targets the module (re: regex, exact name,
 *         or "Linear"), else inferred from the shapes
 *   compressed-tensors naive/int-quantized  <prefix>.weight I8 + .weight_scale [+ .weight_zero_point I8]
 *   FP8 source (quant_method "fp8")  <prefix>.weight F8_E4M3 + .weight_scale_inv per weight_block_size
 *         block, or one scale per tensor / row (qd-qformat-fp8.h)
 *   compressed-tensors float-quantized  <prefix>.weight F8_E4M3 [N][K] + .weight_scale [N,1] (channel),
 *         [1,1] or [1] (tensor) or [ceil(N/128), ceil(K/128)] (block: the group's strategy "block", else
 *         the shape): W = e4m3(q) * s in fp32 (qformat-fp8.c, with the FP8 sources)
 * W[n][k] = (q - z) * s in fp32 (formats.md section E). Every inconsistency in names, dtypes or shapes
 * fails naming the tensor (QD_ERR_FORMAT).
 */
#ifndef QD_QFORMAT_READ_H
#define QD_QFORMAT_READ_H

#include <stdint.h>

#include "qd-safetensors.h"
#include "qd-scheme.h"
#include "qd-status.h"

typedef enum { QD_QF_NONE, QD_QF_GPTQ, QD_QF_AWQ, QD_QF_CT, QD_QF_FP8, QD_QF_OTHER } qd_qformat_kind;

typedef struct qd_qformat qd_qformat;

/* Parses model_dir/config.json's quantization_config (kind NONE when absent). */
qd_status qd_qformat_open(const char *model_dir, qd_qformat **out);
void qd_qformat_close(qd_qformat *qf);
qd_qformat_kind qd_qformat_kind_of(const qd_qformat *qf);
const char *qd_qformat_name(const qd_qformat *qf); /* "none", "gptq", "gptq_v2", "awq", "compressed-tensors", "fp8" */

/* Per-layer description, for inspect: stored = 0 for a plain weight. */
typedef struct qd_qlinear_info {
    int quantized;
    int64_t N, K;
    int bits;
    int group_size; /* -1 for one group over K */
    int sym;        /* 1 when no zero point is stored or all zeros are 2^(bits-1) */
    int act_order;  /* g_idx present and not k / group_size */
    qd_scheme scheme; /* fp8-dynamic / fp8-block (F8_E4M3 weight), w8a8-int8 (int-quantized with activations) */
} qd_qlinear_info;

/* The fp32 weight [N][K] of Linear `prefix` (malloc'ed into *w; caller frees). info may be NULL. */
qd_status qd_qformat_read_linear(const qd_qformat *qf, const qd_checkpoint *ck, const char *prefix, float **w,
                                 int64_t *N, int64_t *K, qd_qlinear_info *info);

/* 1 when qd_qformat_read_linear reads Linear `prefix` as an FP8 source's (qd-qformat-fp8.h: an F8_E4M3
 * weight with no .weight_scale outside compressed-tensors), with *block its weight_block_size (NULL or
 * {0, 0}: one scale per tensor or row); else 0. The loader dequantizes those on the backend. */
int qd_qformat_fp8_source(const qd_qformat *qf, const qd_checkpoint *ck, const char *prefix, const int **block);

/* The description alone (shapes, bits, group, sym, act-order), reading only the small tensors
 * (zeros, g_idx, scales) - what inspect needs for every layer of a large model. */
qd_status qd_qformat_linear_info(const qd_qformat *qf, const qd_checkpoint *ck, const char *prefix,
                                 qd_qlinear_info *info);

/* compressed-tensors: the config group of Linear `prefix` against its tensors' headers (format, type,
 * num_bits, strategy, group / block against the scale's shape, a static input scale), one line naming
 * config.json and what the tensors are when they disagree; QD_OK for other formats and float weights. */
qd_status qd_qformat_check_linear(const qd_qformat *qf, const qd_checkpoint *ck, const char *prefix);

/* 1 when `name` is a quantization tensor of a Linear (qweight, qzeros, scales, g_idx, weight_packed,
 * weight_scale, weight_shape, weight_zero_point, weight_g_idx, weight_scale_inv): loaders skip these and call
 * qd_qformat_read_linear for the prefix. */
int qd_qformat_is_aux_tensor(const char *name);

#endif
