/* SPDX-License-Identifier: MIT
 * export-internal.h - (internal to shard/export*.c) the export plan: one entry per Linear module of
 * the model with the decision taken for it, shared by the driver (export.c) and the writer of the
 * quantization configs (export-config.c).
 */
#ifndef QD_EXPORT_INTERNAL_H
#define QD_EXPORT_INTERNAL_H

#include <cJSON.h>

#include "qd-dtype.h"
#include "qd-export.h"
#include "qd-qsource.h"
#include "qd-st-planned.h"
#include "qd-st-writer.h"

typedef struct qd_xlayer {
    char name[QD_QNAME_MAX];
    long src_index;  /* index in the source, -1 when the run left it unquantized */
    int converted;   /* packed in the target format */
    int N, K, G, bits, group_size, sym, nonseq;
    qd_scheme scheme;
} qd_xlayer;

typedef struct qd_xplan {
    qd_export_format fmt;
    int ct_naive;
    qd_xlayer *layers;
    size_t n;
    int d_bits, d_gs, d_sym, d_nonseq; /* the most common scheme among converted layers */
    int any_converted;
    int lm_head_quant;
    qd_qrun run;
    qd_dtype model_dtype;
    qd_dtype scale_dtype;
    int zeros_at_pack; /* planned from headers: GPTQ v1's zero points are checked as each layer is packed */
} qd_xplan;

/* What one output tensor is made of; the list (export-tensors.c) decides every name, dtype and shape,
 * the producers only fill the bytes. */
typedef enum {
    QD_XT_PLAIN,        /* a source tensor, as stored */
    QD_XT_DEQUANT,      /* "<layer>.weight" dequantised, in the model dtype */
    QD_XT_GPTQ_QWEIGHT, /* the GPTQ / AWQ / compressed-tensors packings (formats.md) */
    QD_XT_GPTQ_QZEROS,
    QD_XT_AWQ_QWEIGHT,
    QD_XT_AWQ_QZEROS,
    QD_XT_CT_PACKED,
    QD_XT_CT_NAIVE,
    QD_XT_CT_ZP_PACKED,
    QD_XT_CT_ZP_NAIVE,
    QD_XT_CT_SHAPE,
    QD_XT_CT_FP8,       /* float-quantized: the E4M3 codes as F8_E4M3 [N][K] */
    QD_XT_CT_FP4,       /* nvfp4 / mxfp4-pack-quantized: E2M1 codes two a byte (low nibble first) [N][K/2] */
    QD_XT_FP4_SCALES,   /* their group scales [N][G]: E4M3 local scales (nvfp4a16) or E8M0 bytes (mxfp4) */
    QD_XT_GLOBAL_SCALE, /* nvfp4a16's global scale, F32 [1] */
    QD_XT_BLOCK_SCALES, /* fp8-block: [ceil(N/128)][ceil(K/128)], one scale per block, in the tensor's dtype */
    QD_XT_SCALES,       /* [G][N] in the tensor's dtype */
    QD_XT_SCALES_T,     /* [N][G] in the tensor's dtype */
    QD_XT_TENSOR_SCALE, /* fp8-static: the one weight scale [1] */
    QD_XT_INPUT_SCALE,  /* fp8-static: the static activation scale [1] (qd_qlinear.input_scale) */
    QD_XT_G_IDX,
    QD_XT_BIAS          /* the layer's bias (a plain tensor) in the tensor's dtype */
} qd_xkind;

typedef struct qd_xtensor {
    char *name;
    qd_xkind kind;
    qd_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t nbytes;
    long layer; /* plan index, -1 for QD_XT_PLAIN */
    long plain; /* source plain index (QD_XT_PLAIN, QD_XT_BIAS), else -1 */
} qd_xtensor;

typedef struct qd_xlist {
    qd_xtensor *t;
    size_t n, cap;
} qd_xlist;

/* scales that the stored dtype changed */
typedef struct qd_xstats {
    size_t scales_inexact;
    double scales_max_rel;
} qd_xstats;

/* Plans every Linear (export-plan.c): the 2-D block weights the run left unquantized, then src's
 * layers in source order, refusing what the format cannot hold. heads == NULL: each layer's header,
 * g_idx and zero points are read from src (GPTQ v1's zero points checked now); else heads[i] and
 * nonseq[i] (act-order g_idx) describe src's layer i before its data exists, and the zero points are
 * checked when the layer is packed (p->zeros_at_pack). */
qd_status qd_export_plan(const qd_export_opts *o, const qd_qsource *src, const qd_qlinear *heads, const int *nonseq,
                         qd_xplan *p);
/* GPTQ v1 stores z-1: a converted asymmetric layer with a zero point of 0 is refused (one line). */
qd_status qd_export_check_v1_zeros(const qd_xplan *p, const qd_xlayer *l, const qd_qlinear *ql);

/* Every tensor of the checkpoint in file order: source tensors and layers sorted by name ("<prefix>.weight"
 * for a layer), each layer's tensors in the format's order. Checks each bias (a float [N] vector). */
qd_status qd_export_list(const qd_xplan *p, const qd_qsource *src, qd_xlist *out);
void qd_export_list_free(qd_xlist *l);

/* The bytes of t (a layer's tensor, not QD_XT_PLAIN) from the loaded layer l: *out is malloc'd, t->nbytes. */
qd_status qd_export_tensor_bytes(const qd_xplan *p, const qd_qsource *src, const qd_qlinear *l, const qd_xtensor *t,
                                 qd_xstats *stats, void **out);

/* Writes the list into dir as safetensors shards (qd-st-planned.h) with a pool of threads
 * (QD_EXPORT_THREADS, else the CPU count, at most 8); adds the scale statistics to *stats. */
qd_status qd_export_write(const qd_xplan *p, const qd_qsource *src, const qd_xlist *l, const char *dir,
                          uint64_t max_shard_bytes, qd_xstats *stats);

/* The pieces of work of a list (export-write.c): one layer's tensors, or a piece of a source tensor. */
typedef struct qd_xunit {
    size_t first, count; /* list entries: one plain tensor, or the tensors of one layer */
    uint64_t off, len;   /* a piece of a mapped plain tensor (len 0: the whole entry) */
} qd_xunit;
qd_status qd_export_units(const qd_qsource *src, const qd_xlist *l, qd_xunit **out, size_t *n);
/* Opens the shards in dir, declares the list, fixes the layout; *index: the writer index of each entry. */
qd_status qd_export_layout(const qd_xlist *l, const char *dir, uint64_t max_shard_bytes, qd_stpl **w,
                           size_t **index);
/* Packs (a layer: loaded from src, checked, scales rounded) and writes unit u. Thread-safe. */
qd_status qd_export_unit_write(const qd_xplan *p, const qd_qsource *src, const qd_xlist *l, qd_stpl *w,
                               const size_t *index, const qd_xunit *u, qd_xstats *stats);
/* QD_EXPORT_THREADS, else the CPU count (at most 8), at most nunits */
int qd_export_threads(size_t nunits);

/* The start both export drivers share (export.c): the output's checks, the model dtype, the plan
 * (heads / nonseq as for qd_export_plan), the list and the disk check; *need: bytes to write. On
 * failure nothing is left allocated. */
qd_status qd_export_prepare(const qd_export_opts *o, const qd_qsource *src, const qd_qlinear *heads, const int *nonseq,
                            qd_xplan *p, qd_xlist *list, uint64_t *need);
/* The end: with st == QD_OK the metadata files and the configs into the output, committed; else (or
 * when that fails) the output aborted. Then the scale warning and the summary line. */
qd_status qd_export_conclude(const qd_export_opts *o, const qd_qsource *src, const qd_xplan *p,
                             qd_outdir *od, qd_status st, const qd_xstats *stats, uint64_t need);

/* one warning when a group vLLM fuses (q/k/v, gate/up) mixes schemes or quantized/unquantized members */
void qd_export_warn_fused(const qd_xplan *p);

/* quantization_config for the plan's format (NULL on allocation failure, reported) */
qd_status qd_export_quant_config(const qd_xplan *p, cJSON **out);

/* The fake format keeps the source's config.json; one that has a quantization_config (an FP8 source,
 * whose weights the fake export writes in fp32) is rewritten into out without it. */
qd_status qd_export_drop_source_quant_config(const char *meta_dir, const char *out);

/* --kv-cache (export-kv.c): the compressed-tensors "kv_cache_scheme" value (null without it; NULL when
 * out of memory), and the refusal of the formats that cannot carry the scales */
cJSON *qd_export_kv_scheme(const qd_qrun *run);
qd_status qd_export_kv_check(const qd_qrun *run, qd_export_format fmt);

#endif
