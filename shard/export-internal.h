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

typedef struct qd_xlayer {
    char name[QD_QNAME_MAX];
    long src_index;  /* index in the source, -1 when the run left it unquantized */
    int converted;   /* packed in the target format */
    int N, K, G, bits, group_size, sym, nonseq;
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
} qd_xplan;

/* one warning when a group vLLM fuses (q/k/v, gate/up) mixes schemes or quantized/unquantized members */
void qd_export_warn_fused(const qd_xplan *p);

/* quantization_config for the plan's format (NULL on allocation failure, reported) */
qd_status qd_export_quant_config(const qd_xplan *p, cJSON **out);

#endif
