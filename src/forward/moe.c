/* SPDX-License-Identifier: MIT
 * moe.c - the mixture-of-experts MLP over the backend (Mixtral, Qwen2-MoE, Qwen3-MoE, as transformers
 * computes them): router logits = n W_router^T; per token, softmax over the experts in fp32, the top_k
 * largest (ties: the lower expert), renormalised when norm_topk_prob (Mixtral always); each expert's
 * tokens are gathered, go through its SwiGLU MLP, and are added back weighted by their probability;
 * Qwen2-MoE adds sigmoid(n w_shared_gate) * shared_expert(n). The routing (softmax, top-k, the token
 * lists) is computed on the host from the downloaded logits; every GEMM runs on the backend.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward-internal.h"
#include "qd-check.h"
#include "qd-log.h"
#include "qd-route.h"

size_t qd__fwd_inter(const qd_model_cfg *c) {
    size_t I = (size_t)c->intermediate;
    if ((size_t)c->moe_inter > I) I = (size_t)c->moe_inter;
    if ((size_t)c->moe_shared_inter > I) I = (size_t)c->moe_shared_inter;
    return I;
}

qd_status qd__moe_alloc(qd_fwd *f) {
    size_t rows = f->seq_len * f->max_seqs, H = (size_t)f->cfg->hidden, E = (size_t)f->cfg->moe_experts;
    size_t k = (size_t)f->cfg->moe_topk;
    QD_CHECK(qd_buf_alloc(f->be, rows * H, &f->xe));
    QD_CHECK(qd_buf_alloc(f->be, rows * H, &f->ye));
    QD_CHECK(qd_buf_alloc(f->be, rows * E, &f->logits));
    QD_CHECK(qd_buf_alloc(f->be, rows * k, &f->ridx));
    QD_CHECK(qd_buf_alloc(f->be, rows * k, &f->rw));
    return qd_buf_alloc(f->be, rows, &f->sg);
}

int qd_block_is_moe(const qd_block_w *w) {
    for (int l = 0; l < w->nlin && l <= QD_LIN_GATE + 1; l++) /* the router follows the 4 or 5 attention Linears */
        if (w->lin[l].kind == QD_LIN_ROUTER) return 1;
    return 0;
}

void qd_route_keep_clear(qd_route_keep *k) {
    if (!k) return;
    free(k->idx), free(k->wt), free(k->cnt), free(k->off);
    *k = (qd_route_keep){0};
}

/* DeepSeek-V3: te/tw [rows, K] from qd_route_dsv3_topk (sigmoid, biased group-limited choice) */
static qd_status route_dsv3(const qd_model_cfg *c, const float *logits, const float *bias, size_t rows, int *te,
                            float *tw) {
    const qd_dsv3_cfg *d = &c->dsv3;
    qd_route_dsv3 rc = {.n_experts = c->moe_experts, .top_k = c->moe_topk, .n_group = d->n_group,
                        .topk_group = d->topk_group, .norm_topk_prob = d->norm_topk_prob,
                        .routed_scaling_factor = (float)d->routed_scaling_factor};
    size_t K = (size_t)c->moe_topk;
    int32_t *idx = malloc(rows * K * sizeof *idx + 1);
    if (!idx) return qd_fail(QD_ERR_NOMEM, "moe: out of memory routing %zu tokens", rows);
    qd_status st = qd_route_dsv3_topk(&rc, logits, bias, rows, idx, tw);
    for (size_t i = 0; st == QD_OK && i < rows * K; i++) te[i] = idx[i];
    free(idx);
    return st;
}

static qd_status route(const qd_model_cfg *c, const float *logits, const float *bias, size_t rows, qd_route_keep *r) {
    size_t E = (size_t)c->moe_experts, K = (size_t)c->moe_topk;
    float *p = malloc(E * sizeof *p), *tw = malloc(rows * K * sizeof *tw);
    int *te = malloc(rows * K * sizeof *te);
    unsigned char *taken = malloc(E);
    r->idx = malloc(rows * K * sizeof *r->idx + 1);
    r->wt = malloc(rows * K * sizeof *r->wt + 1);
    r->cnt = calloc(E, sizeof *r->cnt);
    r->off = calloc(E + 1, sizeof *r->off);
    if (!p || !tw || !te || !taken || !r->idx || !r->wt || !r->cnt || !r->off) {
        free(p), free(tw), free(te), free(taken), qd_route_keep_clear(r);
        return qd_fail(QD_ERR_NOMEM, "moe: out of memory routing %zu tokens", rows);
    }
    qd_status st = c->mla ? route_dsv3(c, logits, bias, rows, te, tw) : QD_OK;
    if (st != QD_OK) {
        free(p), free(tw), free(te), free(taken), qd_route_keep_clear(r);
        return st;
    }
    for (size_t t = 0; t < rows; t++) {
        for (size_t j = 0; c->mla && j < K; j++) r->cnt[te[t * K + j]]++;
        if (c->mla) continue;
        const float *l = logits + t * E;
        float mx = l[0], sum = 0;
        for (size_t e = 1; e < E; e++) mx = l[e] > mx ? l[e] : mx;
        for (size_t e = 0; e < E; e++) sum += p[e] = expf(l[e] - mx);
        for (size_t e = 0; e < E; e++) p[e] /= sum;
        float ksum = 0;
        memset(taken, 0, E);
        for (size_t j = 0; j < K; j++) { /* the j-th largest not yet taken */
            size_t best = E;
            for (size_t e = 0; e < E; e++)
                if (!taken[e] && (best == E || p[e] > p[best])) best = e;
            taken[best] = 1;
            te[t * K + j] = (int)best;
            tw[t * K + j] = p[best];
            ksum += p[best];
        }
        for (size_t j = 0; c->moe_norm_topk && j < K; j++) tw[t * K + j] /= ksum;
        for (size_t j = 0; j < K; j++) r->cnt[te[t * K + j]]++;
    }
    free(taken);
    for (size_t e = 0; e < E; e++) r->off[e + 1] = r->off[e] + r->cnt[e];
    size_t *fill = calloc(E, sizeof *fill);
    if (!fill) {
        free(p), free(tw), free(te), qd_route_keep_clear(r);
        return qd_fail(QD_ERR_NOMEM, "moe: out of memory routing %zu tokens", rows);
    }
    for (size_t t = 0; t < rows; t++)
        for (size_t j = 0; j < K; j++) {
            size_t e = (size_t)te[t * K + j], at = r->off[e] + fill[e]++;
            r->idx[at] = (int32_t)t;
            r->wt[at] = tw[t * K + j];
        }
    free(fill), free(p), free(tw), free(te);
    return QD_OK;
}

/* a SwiGLU MLP of Linears gate/up/down on x [rows, hidden] into y; the down input is captured with down */
static qd_status swiglu_mlp(qd_fwd *f, const qd_block_w *w, int gate, int up, int down, qd_ref x, qd_ref y,
                            size_t rows, qd_capture_fn cb, void *user, int compute_down) {
    qd_backend_t be = f->be;
    size_t I = w->n_out[gate];
    qd_ref g = QD_REF(f->g, 0), u = QD_REF(f->u, 0);
    QD_CHECK(qd_linear_forward(be, w, gate, x, g, rows));
    QD_CHECK(qd_linear_forward(be, w, up, x, u, rows));
    QD_CHECK(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_SWIGLU, .out = g, .x = g, .y = u, .rows = rows,
                                                     .cols = I, .ld = I}));
    if (cb) QD_CHECK(cb(user, down, g, rows));
    return compute_down ? qd_linear_forward(be, w, down, g, y, rows) : QD_OK;
}

/* the table indices of an MoE block: router, shared gate/up/down/gate-logit (-1 without), expert e's gate */
typedef struct {
    int router, sh_gate, sh_up, sh_down, sh_router, exp0;
} moe_layout;

static moe_layout layout_of(const qd_block_w *w) {
    moe_layout L = {QD_LIN_GATE, -1, -1, -1, -1, -1};
    for (int l = QD_LIN_GATE; l < w->nlin; l++) {
        switch (w->lin[l].kind) {
        case QD_LIN_ROUTER: L.router = l; break;
        case QD_LIN_SH_GATE: L.sh_gate = l; break;
        case QD_LIN_SH_UP: L.sh_up = l; break;
        case QD_LIN_SH_DOWN: L.sh_down = l; break;
        case QD_LIN_SH_ROUTER: L.sh_router = l; break;
        case QD_LIN_EXP_GATE: if (L.exp0 < 0) L.exp0 = l; break;
        default: break;
        }
    }
    return L;
}

/* out = sigmoid(n w_sg^T) * shared_expert(n), the gate's sigmoid taken on the host */
static qd_status shared_expert(qd_fwd *f, const qd_block_w *w, const moe_layout *L, qd_ref n, qd_ref out, size_t rows,
                               qd_capture_fn cb, void *user) {
    qd_backend_t be = f->be;
    QD_CHECK(swiglu_mlp(f, w, L->sh_gate, L->sh_up, L->sh_down, n, out, rows, cb, user, 1));
    if (L->sh_router < 0) return QD_OK; /* DeepSeek's shared experts: no gate */
    QD_CHECK(qd_linear_forward(be, w, L->sh_router, n, QD_REF(f->sg, 0), rows));
    float *s = malloc(rows * sizeof *s + 1);
    if (!s) return qd_fail(QD_ERR_NOMEM, "moe: out of memory for the shared expert gate of %zu tokens", rows);
    qd_status st = qd_be_download(be, &(struct qd_download_args){.src = QD_REF(f->sg, 0), .dst = s, .n = rows});
    for (size_t i = 0; st == QD_OK && i < rows; i++) s[i] = 1.0f / (1.0f + expf(-s[i]));
    if (st == QD_OK)
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(f->sg, 0), .src = s, .src_dtype = QD_DT_F32,
                                                       .n = rows});
    free(s);
    QD_CHECK(st);
    size_t H = (size_t)f->cfg->hidden;
    return qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_MUL_ROWV, .out = out, .x = out,
                                                   .v = QD_REF(f->sg, 0), .rows = rows, .cols = H, .ld = H});
}

qd_status qd_moe_forward(qd_fwd *f, const qd_block_w *w, qd_ref n, qd_ref out, size_t rows, qd_capture_fn cb,
                         void *user, int stop_after, const struct qd_moe_calib *moe, int *stopped) {
    const qd_model_cfg *c = f->cfg;
    qd_backend_t be = f->be;
    size_t H = (size_t)c->hidden, E = (size_t)c->moe_experts;
    if (rows > f->max_seqs * f->seq_len) return qd_fail(QD_ERR_INTERNAL, "forward: %zu rows too many", rows);
    moe_layout L = layout_of(w);
    if (L.exp0 < 0 || (w->nlin - L.exp0) != 3 * (int)E)
        return qd_fail(QD_ERR_INTERNAL, "block %d: MoE table without its %zu experts", w->index, E);
    int stop_stage = stop_after >= 0 && stop_after < w->nlin ? w->lin[stop_after].stage : -1;
    const int S = w->lin[L.router].stage; /* the MLP's first stage (2; MLA 3) */
    *stopped = 0;
    const unsigned char *all = moe ? moe->all : NULL, *want = moe ? moe->capture : NULL;
    int stopping = stop_stage == S || stop_stage == S + 1; /* the output is not wanted */
    int no_shared = stopping && moe && moe->no_shared;
    /* stage 2: the all-token input (the router's, which the shared expert's gate/up share: one capture),
     * then every expert's gate/up input */
    if (cb) QD_CHECK(cb(user, L.router, n, rows));
    qd_route_keep *keep = moe ? moe->keep : NULL;
    qd_route_keep r = {0}; /* the host routing of rows tokens */
    qd_status st = QD_OK;
    if (keep && keep->full) {
        r = *keep;
    } else {
        QD_CHECK(qd_linear_forward(be, w, L.router, n, QD_REF(f->logits, 0), rows));
        float *logits = malloc(rows * E * sizeof *logits + 1);
        if (!logits) return qd_fail(QD_ERR_NOMEM, "moe: out of memory for the router logits of %zu tokens", rows);
        st = qd_be_download(be, &(struct qd_download_args){.src = QD_REF(f->logits, 0), .dst = logits, .n = rows * E});
        float *bias = NULL;
        if (st == QD_OK && w->e_bias) {
            bias = malloc(E * sizeof *bias);
            st = bias ? qd_be_download(be, &(struct qd_download_args){.src = QD_REF(w->e_bias, 0), .dst = bias, .n = E})
                      : qd_fail(QD_ERR_NOMEM, "moe: out of memory for the router bias");
        }
        if (st == QD_OK) st = route(c, logits, bias, rows, &r);
        free(logits), free(bias);
        QD_CHECK(st);
        r.full = 1;
        if (keep) *keep = r;
    }
    size_t total = r.off[E];
    st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(f->ridx, 0), .src = r.idx, .src_dtype = QD_DT_I32,
                                                   .n = total});
    if (st == QD_OK)
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(f->rw, 0), .src = r.wt, .src_dtype = QD_DT_F32,
                                                       .n = total});
    for (size_t e = 0; moe && moe->tokens && e < E; e++) moe->tokens[e] += r.cnt[e];
    /* the shared expert (or zero) starts the output */
    if (st == QD_OK && stop_stage != S) {
        if (L.sh_gate >= 0 && !no_shared) st = shared_expert(f, w, &L, n, out, rows, cb, user);
        else st = qd_be_fill(be, &(struct qd_fill_args){.dst = out, .n = rows * H});
    }
    qd_ref xe = QD_REF(f->xe, 0), ye = QD_REF(f->ye, 0);
    for (size_t e = 0; e < E && st == QD_OK; e++) {
        int g = L.exp0 + 3 * (int)e, want_all = all && all[e];
        size_t ne = r.cnt[e];
        if (stopping && want && !want[e]) continue;
        qd_ref idx = QD_REF(f->ridx, r.off[e]), wt = QD_REF(f->rw, r.off[e]);
        if (want_all) { /* the statistics from every token; the output below from the routed ones */
            if (cb) st = cb(user, g, n, rows);
            if (st == QD_OK && stop_stage != S) st = swiglu_mlp(f, w, g, g + 1, g + 2, n, ye, rows, cb, user, 0);
            if (st != QD_OK) break;
        }
        if (!ne) continue;
        st = qd_be_rows(be, &(struct qd_rows_args){.kind = QD_ROWS_GATHER, .out = xe, .x = n, .idx = idx, .n = ne,
                                                    .rows = rows, .cols = H});
        if (st == QD_OK && cb && !want_all) st = cb(user, g, xe, ne);
        if (st != QD_OK || stop_stage == S) continue;
        st = swiglu_mlp(f, w, g, g + 1, g + 2, xe, ye, ne, want_all ? NULL : cb, user, 1);
        if (st == QD_OK)
            st = qd_be_rows(be, &(struct qd_rows_args){.kind = QD_ROWS_SCATTER_ADD, .out = out, .x = ye, .idx = idx,
                                                        .w = wt, .n = ne, .rows = rows, .cols = H});
    }
    if (!keep) qd_route_keep_clear(&r); /* else the caller's, until it clears it */
    if (stop_stage == S || stop_stage == S + 1) *stopped = 1;
    return st;
}
