/* SPDX-License-Identifier: MIT
 * forward-internal.h - the inside of qd_fwd, shared by block.c (attention, dense MLP) and moe.c (the
 * mixture-of-experts MLP). Internal to src/forward. */
#ifndef QD_FORWARD_INTERNAL_H
#define QD_FORWARD_INTERNAL_H

#include "qd-forward.h"

struct qd_fwd {
    qd_backend_t be;
    const qd_model_cfg *cfg;
    size_t seq_len, max_seqs;
    qd_buf_t cos, sin;
    qd_buf_t n, q, k, v, att, h, g, u, t; /* scratch, sized for max_seqs * seq_len rows */
    /* MoE only: gathered rows and expert output [rows, hidden], router logits [rows, experts], the routed
     * token indices (int32) and weights [rows * top_k], the shared expert's gate [rows] */
    qd_buf_t xe, ye, logits, ridx, rw, sg;
};

/* the widest MLP intermediate of cfg (g/u scratch): dense, routed expert or shared expert */
size_t qd__fwd_inter(const qd_model_cfg *cfg);
/* an MLA block's attention (mla-block.c), as qd_attn_forward */
qd_status qd__mla_attn(qd_fwd *f, const qd_block_w *w, qd_ref n, qd_ref out, size_t nseq, qd_capture_fn cb,
                       void *user, int stop_after, int *stopped);
/* the MoE scratch of f (cfg->moe_experts > 0) */
qd_status qd__moe_alloc(qd_fwd *f);

#endif
