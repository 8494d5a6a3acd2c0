/* SPDX-License-Identifier: MIT
 * quantize-internal.h - the block driver's context (qctx.c), shared by quantize.c (RTN, GPTQ), awq.c
 * and replay.c. */
#ifndef QD_QUANTIZE_INTERNAL_H
#define QD_QUANTIZE_INTERNAL_H

#include "qd-quantize.h"

struct qd_qctx {
    qd_backend_t be;
    const qd_model_cfg *cfg;
    qd_quantize_opts o;
    qd_fwd *fwd;          /* NULL without calibration */
    size_t chunk_seqs;
    qd_buf_t H[4];        /* Hessian per true-sequential group */
    size_t gK[4];         /* input features of each group */
    qd_buf_t Hc;          /* a copy for groups of several Linears */
    qd_buf_t cache[4];    /* AWQ: every calibration input of each group [rows, gK] */
    qd_buf_t fp_out, trial_out; /* AWQ: loss-module outputs [rows, hidden] */
    qd_buf_t att, hres, act;    /* GPTQ resident forward: o / post-attention residual / down inputs, all rows */
    qd_buf_t xn, y;             /* per-chunk scratch [chunk rows, max(hidden, heads*head_dim)] */
};

/* forward every chunk of inputs through block w into outputs (capture / stop_after as in qd-forward.h) */
qd_status qd__forward_all(qd_qctx *c, const qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_capture_fn cap, void *user,
                          int stop_after);
/* replace w->w[l] by r's dequantization with the scale dtype of the export */
qd_status qd__install(qd_qctx *c, qd_block_w *w, qd_lin l, const qd_qresult *r);

#endif
