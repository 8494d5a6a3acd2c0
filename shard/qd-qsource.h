/* SPDX-License-Identifier: MIT
 * qd-qsource.h - where the export reads a quantization run from: an abstract source of per-Linear
 * quantization data plus the tensors that stay unquantized.
 *
 * The export never knows where the data lives. Today it is a fake-quant directory written by
 * `qdist quantize --format fake` (qd_qsource_open_fake); the MPI pipeline's HDF5 staging can supply a
 * second implementation of qd_qsource_i. A source is {iface, ctx}; every entry below is required.
 * Every entry may be called from several threads at once (the export reads with a pool of workers).
 *
 * A quantized Linear "<prefix>" (W[N][K], N = out_features) is described by qd_qlayer: codes [N][K]
 * in 0..2^bits-1 in the original column order, scales [G][N] (fp32), true zero points [G][N],
 * g_idx [K] (group of each input column). Dequantisation: W[n][k] = (code - zero[g][n]) * scale[g][n]
 * with g = g_idx[k], computed in fp32. group_size is -1 for one group spanning K.
 */
#ifndef QD_QSOURCE_H
#define QD_QSOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "qd-dtype.h"
#include "qd-status.h"

#define QD_QNAME_MAX 256

typedef struct qd_qlayer {
    char name[QD_QNAME_MAX]; /* Linear prefix, e.g. "model.layers.0.self_attn.q_proj" */
    int N, K, G;
    int bits;
    int group_size;          /* -1: one group of K */
    int sym;
    char method[16];         /* "gptq", "awq", "rtn", ... (informational) */
    uint8_t *codes;          /* [N][K]; NULL when loaded without codes */
    float *scales;           /* [G][N] */
    int32_t *zeros;          /* [G][N] */
    int32_t *g_idx;          /* [K] */
} qd_qlayer;

void qd_qlayer_free(qd_qlayer *l); /* frees the arrays, keeps the header */
/* 1 when g_idx[k] == k / group_size for every k (always for group_size -1 with g_idx all 0) */
int qd_qlayer_g_idx_sequential(const qd_qlayer *l);
/* Round scales in place to dt (F16/BF16/F32) - see qd_qrun.scales_rounded */
void qd_qlayer_round_scales(qd_qlayer *l, qd_dtype dt);
/* QD_OK when every scale is finite and stays finite once stored as dt;
 * else one error naming `what` (the format or flag that picked dt), the module, the group, the value
 * and the dtype. GPTQ/AWQ readers (vLLM, transformers) hold scales in F16 only, compressed-tensors in
 * the model dtype, so no wider dtype can be chosen silently: the run is refused instead. */
qd_status qd_qlayer_check_scales(const qd_qlayer *l, qd_dtype dt, const char *what);
/* W[N][K] fp32 from codes/scales/zeros/g_idx (l loaded with codes) */
void qd_qlayer_dequant(const qd_qlayer *l, float *w);

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
    qd_status (*load_layer)(void *ctx, size_t i, int with_codes, qd_qlayer *out);
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
qd_status qd_qsource_next(const qd_qsource *s, size_t *i, int with_codes, qd_qlayer *out, int *done);
/* The layer named prefix; *found = 0 (and QD_OK) when it is not quantized. */
qd_status qd_qsource_get(const qd_qsource *s, const char *prefix, int with_codes, qd_qlayer *out, int *found);
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
