/* SPDX-License-Identifier: MIT
 * mla-block.c - an MLA (DeepSeek-V3) block's attention (forward-internal.h qd__mla_attn): the block's
 * Linear table mapped onto mla.c's weights, its captures onto the table's indices, and stop_after
 * honoured once every capture of that Linear's stage is made. */
#include <math.h>

#include "forward-internal.h"
#include "qd-check.h"
#include "qd-log.h"
#include "qd-mla.h"

typedef struct {
    const qd_block_w *w;
    int idx[QD_MLA_NLIN]; /* table index of each MLA Linear, -1 when absent */
    qd_capture_fn cb;
    void *user;
    int stop_stage, stop;
} mla_cap;

static qd_status on_capture(void *user, qd_mla_lin lin, qd_ref x, size_t rows, size_t cols) {
    mla_cap *m = user;
    int l = m->idx[lin];
    (void)cols;
    if (l < 0) return qd_fail(QD_ERR_INTERNAL, "block %d: MLA capture of an absent Linear", m->w->index);
    if (m->cb) QD_CHECK(m->cb(m->user, l, x, rows));
    /* the last capture of each stage: q_a/q_proj (0), kv_b (1), o_proj (2) */
    int last = lin == QD_MLA_Q_A || lin == QD_MLA_KV_B || lin == QD_MLA_O;
    if (last && m->w->lin[l].stage == m->stop_stage) m->stop = 1;
    return QD_OK;
}

qd_status qd__mla_attn(qd_fwd *f, const qd_block_w *w, qd_ref n, qd_ref out, size_t nseq, qd_capture_fn cb,
                       void *user, int stop_after, int *stopped) {
    const qd_model_cfg *c = f->cfg;
    if (nseq > f->max_seqs) return qd_fail(QD_ERR_INTERNAL, "forward: %zu sequences > %zu", nseq, f->max_seqs);
    mla_cap m = {.w = w, .cb = cb, .user = user, .stop_stage = -1};
    qd_mla_w mw = {.q_a_norm = w->q_a_norm, .kv_a_norm = w->kv_a_norm};
    for (int i = 0; i < QD_MLA_NLIN; i++) m.idx[i] = -1;
    for (int l = 0; l < w->nlin; l++) {
        int k = -1;
        switch (w->lin[l].kind) {
        case QD_LIN_Q:
        case QD_LIN_Q_A: k = QD_MLA_Q_A; break;
        case QD_LIN_Q_B: k = QD_MLA_Q_B; break;
        case QD_LIN_KV_A: k = QD_MLA_KV_A; break;
        case QD_LIN_KV_B: k = QD_MLA_KV_B; break;
        case QD_LIN_O: k = QD_MLA_O; break;
        default: break;
        }
        if (k < 0) continue;
        m.idx[k] = l;
        mw.w[k] = w->w[l];
        mw.b[k] = w->b[l];
    }
    if (stop_after >= 0 && stop_after < w->nlin && w->lin[stop_after].stage < qd_model_mlp_stage(c))
        m.stop_stage = w->lin[stop_after].stage;
    float scale = (float)(1.0 / sqrt((double)c->dsv3.qk_head_dim) * qd_rope_softmax_mscale(&c->rope));
    *stopped = 0;
    QD_CHECK(qd_mla_forward(f->be, &(struct qd_mla_args){
        .c = &c->dsv3, .hidden = c->hidden, .heads = c->nheads, .scale = scale, .w = &mw, .x = n, .out = out,
        .cos = QD_REF(f->cos, 0), .sin = QD_REF(f->sin, 0), .nseq = nseq, .seq_len = f->seq_len,
        .capture = on_capture, .user = &m, .stop = &m.stop}));
    *stopped = m.stop;
    return QD_OK;
}
