/* SPDX-License-Identifier: MIT
 * qd-qsource.h - where the export reads a quantization run from: an abstract source of per-Linear
 * quantization data plus the tensors that stay unquantized.
 *
 * The export never knows where the data lives. Two implementations of qd_qsource_i exist: the HDF5
 * staging of a quantize run (qd-qsource-stage.h, what `qdist quantize` exports from) and a fake-quant
 * directory written by `qdist quantize --format fake` (qd_qsource_open_fake, what `qdist export`
 * reads). A source is {iface, ctx}; every entry below is required.
 * Every entry may be called from several threads at once (the export reads with a pool of workers).
 *
 * A quantized Linear "<prefix>" is a qd_qlinear (src/core/qd-qlinear.h).
 */
#ifndef QD_QSOURCE_H
#define QD_QSOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "qd-dtype.h"
#include "qd-qlinear.h"
#include "qd-status.h"

/* Run-wide settings (informational in the exported configs). */
typedef struct qd_qrun {
    int act_order;
    int static_groups;
    int true_sequential;
    double damp;             /* fraction, e.g. 0.01; < 0 when unknown */
    char method[16];
    /* The fake weights were computed with the scales rounded to scale_dtype (the quantizer's
     * --scale-dtype): the export rounds every layer's scales the same way before packing or
     * dequantising, so what it writes equals the fake weights. 0 = scales used as they are. */
    int scales_rounded;
    qd_dtype scale_dtype;
    /* An FP8 source's weight_block_size ({0, 0}: one scale per tensor or row): the staging source
     * dequantizes the FP8 weights of blocks after the decoder (DeepSeek-V3's multi-token prediction
     * block, which is not quantized) to bf16 with it and drops their scales. */
    int fp8_block[2];
    /* --kv-cache (0 off, 1 fp8 per tensor, 2 fp8 per KV head): each block stages
     * self_attn.k_scale / v_scale (kv_heads values or 1), exported in kv_dtype (the model's) with the
     * compressed-tensors config's kv_cache_scheme */
    int kv_cache, kv_heads;
    qd_dtype kv_dtype;
} qd_qrun;

typedef struct qd_plain_info {
    const char *name;
    qd_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t nbytes;
} qd_plain_info;

typedef struct qd_qsource_i {
    /* number of quantized Linear layers; their order is the source's storage order */
    size_t (*n_layers)(void *ctx);
    /* layer i: header always; scales/zeros/g_idx always; codes only when with_codes */
    qd_status (*load_layer)(void *ctx, size_t i, int with_codes, qd_qlinear *out);
    /* index of the layer named prefix, or -1 */
    long (*find_layer)(void *ctx, const char *prefix);
    /* tensors that are not quantization data (embeddings, norms, biases, unquantized Linears) */
    size_t (*n_plain)(void *ctx);
    qd_status (*plain_info)(void *ctx, size_t i, qd_plain_info *out);
    qd_status (*plain_read)(void *ctx, size_t i, void *dst); /* nbytes as stored */
    /* the stored bytes of plain tensor i in memory (a read-only mapping of the source file), or NULL
     * when they must be read with plain_read (converted or overridden data) */
    const void *(*plain_map)(void *ctx, size_t i);
    /* directory holding config.json, generation_config.json, tokenizer files, qdist_report.json */
    const char *(*meta_dir)(void *ctx);
    void (*run)(void *ctx, qd_qrun *out);
    void (*free)(void *ctx);
} qd_qsource_i;

typedef struct qd_qsource {
    const qd_qsource_i *iface;
    void *ctx;
} qd_qsource;

/* Next layer in storage order: *i is the cursor (start at 0); *done = 1 after the last. */
qd_status qd_qsource_next(const qd_qsource *s, size_t *i, int with_codes, qd_qlinear *out, int *done);
/* The layer named prefix; *found = 0 (and QD_OK) when it is not quantized. */
qd_status qd_qsource_get(const qd_qsource *s, const char *prefix, int with_codes, qd_qlinear *out, int *found);
void qd_qsource_close(qd_qsource *s);

/* The qd_plain_info of a checkpoint tensor (qd-safetensors.h), for sources whose plain tensors are
 * checkpoint tensors. */
struct qd_st_tensor;
void qd_plain_info_of(const struct qd_st_tensor *t, qd_plain_info *out);

/* A fake-quant directory: per quantized Linear "<prefix>.qd_codes" U8 [N,K], ".qd_scales" F32 [G,N],
 * ".qd_zeros" I32 [G,N], ".qd_g_idx" I32 [K] (and "<prefix>.weight", the dequantised weight, which is
 * not a plain tensor here); bits / group_size / sym / method per module and the run settings come from
 * qdist_report.json ("modules": {prefix: {...}} or a list of {"name": prefix, ...}; settings under
 * "settings", "run" or the top level; settings.scale_dtype "F16"/"BF16"/"F32" sets qd_qrun's rounding). Missing per-module fields are inferred (bits from the largest
 * code and zero, group size from g_idx, sym when every zero is 2^(bits-1)) with a warning. */
qd_status qd_qsource_open_fake(const char *dir, qd_qsource *out);

#endif
