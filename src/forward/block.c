/* SPDX-License-Identifier: MIT
 * block.c - the decoder block forward over the backend: h = x + o(Attn(RMSNorm_in(x))),
 * out = h + down(silu(gate(n)) * up(n)) with n = RMSNorm_post(h) (an MoE block's MLP: moe.c).
 * Scratch buffers live in qd_fwd. */
#include <math.h>
#include <stdlib.h>

#include "forward-internal.h"
#include "qd-check.h"
#include "qd-log.h"

size_t qd_fwd_seq_len(const qd_fwd *f) { return f->seq_len; }
size_t qd_fwd_max_seqs(const qd_fwd *f) { return f->max_seqs; }

void qd_fwd_free(qd_fwd *f) {
    if (!f) return;
    qd_buf_t *bufs[] = {&f->cos, &f->sin, &f->n, &f->q, &f->k, &f->v, &f->att, &f->h, &f->g, &f->u, &f->t,
                        &f->xe, &f->ye, &f->logits, &f->ridx, &f->rw, &f->sg};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) qd_buf_free(*bufs[i]);
    free(f);
}

qd_status qd_fwd_create(qd_backend_t be, const qd_model_cfg *cfg, size_t seq_len, size_t max_seqs, qd_fwd **out) {
    if (!seq_len || !max_seqs) return qd_fail(QD_ERR_USAGE, "forward: sequence length and count must be > 0");
    qd_fwd *f;
    QD_ALLOC(f, 1);
    f->be = be;
    f->cfg = cfg;
    f->seq_len = seq_len;
    f->max_seqs = max_seqs;
    size_t rows = seq_len * max_seqs, hd = (size_t)cfg->head_dim, half = hd / 2;
    size_t H = (size_t)cfg->hidden, I = qd__fwd_inter(cfg);
    size_t qo = (size_t)cfg->nheads * hd, kvo = (size_t)cfg->nkv * hd;
    qd_status st;
    float *c = malloc(seq_len * half * sizeof *c), *s = malloc(seq_len * half * sizeof *s);
    if (!c || !s) {
        free(c), free(s), free(f);
        return qd_fail(QD_ERR_NOMEM, "forward: out of memory for rope tables of %zu positions", seq_len);
    }
    QD_CHECK_GOTO(qd_rope_tables(cfg, seq_len, c, s), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, seq_len * half, &f->cos), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, seq_len * half, &f->sin), st, fail);
    QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(f->cos, 0), .src = c, .src_dtype = QD_DT_F32,
                                                            .n = seq_len * half}), st, fail);
    QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(f->sin, 0), .src = s, .src_dtype = QD_DT_F32,
                                                            .n = seq_len * half}), st, fail);
    size_t wide = H > qo ? H : qo;
    QD_CHECK_GOTO(qd_buf_alloc(be, rows * wide, &f->n), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, rows * qo, &f->q), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, rows * kvo, &f->k), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, rows * kvo, &f->v), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, rows * qo, &f->att), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, rows * H, &f->h), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, rows * I, &f->g), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, rows * I, &f->u), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, rows * H, &f->t), st, fail);
    if (cfg->moe_experts > 0) QD_CHECK_GOTO(qd__moe_alloc(f), st, fail);
    free(c), free(s);
    *out = f;
    return QD_OK;
fail:
    free(c), free(s);
    qd_fwd_free(f);
    return st;
}

qd_status qd_linear_forward(qd_backend_t be, const qd_block_w *w, int l, qd_ref x, qd_ref y, size_t rows) {
    size_t N = w->n_out[l], K = w->n_in[l];
    QD_CHECK(qd_be_gemm(be, &(struct qd_gemm_args){.trans_b = 1, .M = rows, .N = N, .K = K, .alpha = 1, .beta = 0,
                                                   .A = x, .B = QD_REF(w->w[l], 0), .C = y, .lda = K, .ldb = K,
                                                   .ldc = N}));
    if (w->b[l])
        QD_CHECK(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_ADD_ROWV, .out = y, .x = y,
                                                         .v = QD_REF(w->b[l], 0), .rows = rows, .cols = N, .ld = N}));
    return QD_OK;
}

qd_status qd_norm_forward(qd_backend_t be, const qd_model_cfg *cfg, qd_buf_t weight, qd_ref x, qd_ref out,
                          size_t rows) {
    size_t H = (size_t)cfg->hidden;
    return qd_be_rmsnorm(be, &(struct qd_rmsnorm_args){.out = out, .x = x, .weight = QD_REF(weight, 0), .rows = rows,
                                                       .dim = H, .ld = H, .eps = (float)cfg->rms_eps});
}

/* capture, and tell the caller whether to stop here */
static qd_status hook(qd_capture_fn cb, void *user, int l, qd_ref x, size_t rows, int stop_after, int *stopped) {
    if (cb) QD_CHECK(cb(user, l, x, rows));
    if (stop_after == l) *stopped = 1;
    return QD_OK;
}

qd_status qd_attn_forward(qd_fwd *f, const qd_block_w *w, qd_ref n, qd_ref out, size_t nseq,
                          qd_capture_fn capture, void *user, int stop_after, int *stopped) {
    const qd_model_cfg *cfg = f->cfg;
    qd_backend_t be = f->be;
    size_t rows = nseq * f->seq_len, hd = (size_t)cfg->head_dim;
    size_t nh = (size_t)cfg->nheads, nkv = (size_t)cfg->nkv;
    if (cfg->mla) return qd__mla_attn(f, w, n, out, nseq, capture, user, stop_after, stopped);
    if (nseq > f->max_seqs) return qd_fail(QD_ERR_INTERNAL, "forward: %zu sequences > %zu", nseq, f->max_seqs);
    *stopped = 0;
    QD_CHECK(hook(capture, user, QD_LIN_Q, n, rows, stop_after, stopped));
    if (*stopped) return QD_OK;
    qd_ref q = QD_REF(f->q, 0), k = QD_REF(f->k, 0), v = QD_REF(f->v, 0), att = QD_REF(f->att, 0);
    QD_CHECK(qd_linear_forward(be, w, QD_LIN_Q, n, q, rows));
    QD_CHECK(qd_linear_forward(be, w, QD_LIN_K, n, k, rows));
    QD_CHECK(qd_linear_forward(be, w, QD_LIN_V, n, v, rows));
    if (w->q_norm) {
        float eps = (float)cfg->rms_eps;
        QD_CHECK(qd_be_rmsnorm(be, &(struct qd_rmsnorm_args){.out = q, .x = q, .weight = QD_REF(w->q_norm, 0),
                                                             .rows = rows * nh, .dim = hd, .ld = hd, .eps = eps}));
        QD_CHECK(qd_be_rmsnorm(be, &(struct qd_rmsnorm_args){.out = k, .x = k, .weight = QD_REF(w->k_norm, 0),
                                                             .rows = rows * nkv, .dim = hd, .ld = hd, .eps = eps}));
    }
    QD_CHECK(qd_be_rope(be, &(struct qd_rope_args){.x = q, .cos = QD_REF(f->cos, 0), .sin = QD_REF(f->sin, 0),
                                                   .rows = rows, .heads = nh, .head_dim = hd, .ld = nh * hd,
                                                   .seq_len = f->seq_len}));
    QD_CHECK(qd_be_rope(be, &(struct qd_rope_args){.x = k, .cos = QD_REF(f->cos, 0), .sin = QD_REF(f->sin, 0),
                                                   .rows = rows, .heads = nkv, .head_dim = hd, .ld = nkv * hd,
                                                   .seq_len = f->seq_len}));
    size_t window = cfg->sliding_window > 0 && (size_t)cfg->sliding_window < f->seq_len ? (size_t)cfg->sliding_window : 0;
    QD_CHECK(qd_be_attention(be, &(struct qd_attention_args){.out = att, .q = q, .k = k, .v = v, .nseq = nseq,
                                                             .seq_len = f->seq_len, .heads = nh, .kv_heads = nkv,
                                                             .head_dim = hd, .window = window,
                                                             .scale = 1.0f / sqrtf((float)hd)}));
    QD_CHECK(hook(capture, user, QD_LIN_O, att, rows, stop_after, stopped));
    if (*stopped) return QD_OK;
    return qd_linear_forward(be, w, QD_LIN_O, att, out, rows);
}

qd_status qd_mlp_forward(qd_fwd *f, const qd_block_w *w, qd_ref n, qd_ref out, size_t rows,
                         qd_capture_fn capture, void *user, int stop_after, int *stopped) {
    qd_backend_t be = f->be;
    size_t I = (size_t)f->cfg->intermediate;
    if (rows > f->max_seqs * f->seq_len) return qd_fail(QD_ERR_INTERNAL, "forward: %zu rows too many", rows);
    *stopped = 0;
    int G = -1; /* the MLP's first table index: 4, or after an MLA block's 4 or 5 attention Linears */
    for (int l = 0; l < w->nlin && G < 0; l++)
        if (w->lin[l].kind == QD_LIN_GATE) G = l;
    if (G < 0 || G + 2 >= w->nlin)
        return qd_fail(QD_ERR_INTERNAL, "block %d: no dense MLP in its Linear table", w->index);
    QD_CHECK(hook(capture, user, G, n, rows, stop_after, stopped));
    if (*stopped) return QD_OK;
    qd_ref g = QD_REF(f->g, 0), u = QD_REF(f->u, 0);
    QD_CHECK(qd_linear_forward(be, w, G, n, g, rows));
    QD_CHECK(qd_linear_forward(be, w, G + 1, n, u, rows));
    QD_CHECK(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_SWIGLU, .out = g, .x = g, .y = u, .rows = rows,
                                                     .cols = I, .ld = I}));
    QD_CHECK(hook(capture, user, G + 2, g, rows, stop_after, stopped));
    if (*stopped) return QD_OK;
    return qd_linear_forward(be, w, G + 2, g, out, rows);
}

qd_status qd_block_forward(qd_fwd *f, const struct qd_block_fwd_args *a) {
    const qd_model_cfg *cfg = f->cfg;
    qd_backend_t be = f->be;
    size_t rows = a->nseq * f->seq_len, H = (size_t)cfg->hidden;
    int stopped = 0;
    qd_ref n = QD_REF(f->n, 0), h = a->h_mode == QD_FWD_H_COMPUTE ? QD_REF(f->h, 0) : a->out, t = QD_REF(f->t, 0);
    if (a->h_mode != QD_FWD_H_COMPUTE && a->out.buf == a->x.buf && a->out.off == a->x.off)
        return qd_fail(QD_ERR_INTERNAL, "forward: block %d: h kept in out, but out is the input", a->w->index);
    if (a->h_mode != QD_FWD_H_REUSE) {
        QD_CHECK(qd_norm_forward(be, cfg, a->w->ln_in, a->x, n, rows));
        QD_CHECK(qd_attn_forward(f, a->w, n, t, a->nseq, a->capture, a->user, a->stop_after, &stopped));
        if (stopped) return QD_OK;
        QD_CHECK(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_ADD, .out = h, .x = a->x, .y = t,
                                                         .rows = rows, .cols = H, .ld = H}));
    }
    QD_CHECK(qd_norm_forward(be, cfg, a->w->ln_post, h, n, rows));
    if (qd_block_is_moe(a->w))
        QD_CHECK(qd_moe_forward(f, a->w, n, t, rows, a->capture, a->user, a->stop_after, &a->moe, &stopped));
    else
        QD_CHECK(qd_mlp_forward(f, a->w, n, t, rows, a->capture, a->user, a->stop_after, &stopped));
    if (stopped) return QD_OK;
    return qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_ADD, .out = a->out, .x = h, .y = t, .rows = rows,
                                                   .cols = H, .ld = H});
}
