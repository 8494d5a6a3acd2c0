/* SPDX-License-Identifier: MIT
 * awq-cache.c - the inputs AWQ keeps (awq-internal.h qd__awq_capture): one full-precision forward of
 * the block, chunk by chunk, keeping each Hessian key's input with its slab offsets, and the block's
 * output (the full-precision chain). An MoE block routes its tokens in that forward and counts them;
 * its experts' inputs come from a second pass of the MoE MLP over the kept router input, once the
 * counts (summed over the ranks) say which experts take every token: --moe-calibration all, fewer
 * routed tokens than --moe-min-tokens, or none at all (AWQ needs some input to search on). Such an
 * expert's gate/up read the router's input (an alias), its down input is every token's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-phase.h"
#include "awq-internal.h"

typedef struct {
    qd_qctx *c;
    const qd_block_w *w;
    size_t slab;
    int experts; /* this pass keeps the expert Linears' inputs (1) or every other one's (0) */
} cache_cap;

qd__awq_in *qd__awq_in_of(qd_qctx *c, int key) {
    qd__awq_in *a = &c->ain[key];
    return a->alias >= 0 ? &c->ain[a->alias] : a;
}

int qd__awq_expert_all(const qd_qctx *c, int e) {
    return c->o.moe_all || c->expert_tokens[e] < c->o.moe_min_tokens || c->expert_tokens[e] == 0;
}

/* append rows of x to key's cache, growing it (all-token keys get room for every local row at once) */
static qd_status append(cache_cap *cc, int key, int all_rows, qd_ref x, size_t rows) {
    qd_qctx *c = cc->c;
    qd__awq_in *a = &c->ain[key];
    size_t K = c->gK[key], need = (a->rows + rows) * K, local = c->o.nseq * c->o.seq_len;
    a->K = K;
    if (!a->buf || qd_buf_len(a->buf) < need) {
        size_t cap = all_rows ? local * K : 2 * (a->buf ? qd_buf_len(a->buf) : 0);
        if (cap < need) cap = need;
        if (cap > local * K && need <= local * K) cap = local * K;
        qd_buf_t nb;
        QD_CHECK(qd_buf_alloc(c->be, cap, &nb));
        qd_status st = a->rows ? qd_be_copy(c->be, &(struct qd_copy_args){.dst = QD_REF(nb, 0), .src = QD_REF(a->buf, 0),
                                                                          .rows = 1, .cols = a->rows * K,
                                                                          .ldd = a->rows * K, .lds = a->rows * K})
                               : QD_OK;
        if (st != QD_OK) {
            qd_buf_free(nb);
            return st;
        }
        qd_buf_free(a->buf);
        a->buf = nb;
    }
    QD_CHECK(qd_be_copy(c->be, &(struct qd_copy_args){.dst = QD_REF(a->buf, a->rows * K), .src = x, .rows = 1,
                                                      .cols = rows * K, .ldd = rows * K, .lds = rows * K}));
    a->rows += rows;
    return QD_OK;
}

static qd_status cache_cb(void *user, int l, qd_ref x, size_t rows) {
    cache_cap *cc = user;
    const qd_linear *lin = &cc->w->lin[l];
    int e = lin->expert;
    if ((e >= 0) != cc->experts || !rows) return QD_OK;
    if (e >= 0 && lin->kind == QD_LIN_EXP_GATE && cc->c->expert_all[e]) return QD_OK; /* the router's input */
    char name[128];
    snprintf(name, sizeof name, "model.layers.%d.%s", cc->w->index, lin->module);
    QD_CHECK(qd_check_finite(cc->c->be, x.buf, x.off, rows * cc->c->gK[lin->hkey], "its input activations", name));
    return append(cc, lin->hkey, e < 0 || cc->c->expert_all[e], x, rows);
}

/* every key of this pass's Linears: slab i ends here (a key without rows in this chunk too) */
static void close_slab(cache_cap *cc) {
    for (int l = 0; l < cc->w->nlin; l++) {
        const qd_linear *lin = &cc->w->lin[l];
        if ((lin->expert >= 0) == cc->experts) cc->c->ain[lin->hkey].off[cc->slab + 1] = cc->c->ain[lin->hkey].rows;
    }
}

/* the routed counts of every rank summed (data-parallel ranks route their own sequences) */
static qd_status sum_counts(qd_qctx *c, double *t, size_t n) {
    if (!c->coll || c->coll->size <= 1) return QD_OK;
    qd_phase prev = qd_phase_set(c->be, QD_PH_REDUCE);
    qd_status st = c->coll->allreduce_f64(c->coll, t, n);
    qd_phase_set(c->be, prev);
    return st;
}

static qd_status reset(qd_qctx *c, const qd_block_w *w) {
    size_t nsl = qd__dp_local_slabs(c);
    if (!c->ain) {
        c->ain = calloc((size_t)c->nh, sizeof *c->ain);
        if (!c->ain) return qd_fail(QD_ERR_NOMEM, "awq: out of memory for %d input caches", c->nh);
    }
    for (int k = 0; k < c->nh; k++) {
        qd__awq_in *a = &c->ain[k];
        /* K from the model, not from the first appended rows: a rank given no rows of this key (no
         * calibration chunk, or no token routed to an expert) must still take part in every sum */
        a->rows = a->total = 0, a->alias = -1, a->K = c->gK[k];
        if (!a->off) a->off = calloc(nsl + 1, sizeof *a->off);
        if (!a->off) return qd_fail(QD_ERR_NOMEM, "awq: out of memory for %zu slabs", nsl);
        memset(a->off, 0, (nsl + 1) * sizeof *a->off);
    }
    (void)w;
    return QD_OK;
}

/* the MoE MLP again over the kept router input: every expert's inputs by the calibration rules */
static qd_status expert_pass(qd_qctx *c, const qd_block_w *w, cache_cap *cc) {
    size_t E = (size_t)c->cfg->moe_experts, S = c->o.seq_len, H = (size_t)c->cfg->hidden;
    int KB = qd_model_mlp_key(c->cfg);
    double *t = malloc(E * sizeof *t + 1);
    if (!t) return qd_fail(QD_ERR_NOMEM, "awq: out of memory for %zu expert counts", E);
    for (size_t e = 0; e < E; e++) t[e] = (double)c->expert_tokens[e];
    qd_status st = sum_counts(c, t, E);
    for (size_t e = 0; st == QD_OK && e < E; e++) c->expert_tokens[e] = (size_t)t[e];
    free(t);
    QD_CHECK(st);
    for (size_t e = 0; e < E; e++) c->expert_all[e] = (unsigned char)qd__awq_expert_all(c, (int)e);
    struct qd_moe_calib mc = {.all = c->expert_all};
    const qd__awq_in *r = &c->ain[KB];
    cc->experts = 1;
    for (size_t i = 0, s0 = 0; s0 < c->o.nseq; i++, s0 += c->chunk_seqs) {
        size_t ns = c->o.nseq - s0 < c->chunk_seqs ? c->o.nseq - s0 : c->chunk_seqs;
        int stopped;
        cc->slab = i;
        QD_CHECK(qd_moe_forward(c->fwd, w, QD_REF(r->buf, s0 * S * H), QD_REF(c->trial_out, 0), ns * S, cache_cb, cc,
                                -1, &mc, &stopped));
        close_slab(cc);
    }
    for (int l = 0; l < w->nlin; l++)
        if (w->lin[l].kind == QD_LIN_EXP_GATE && c->expert_all[w->lin[l].expert]) c->ain[w->lin[l].hkey].alias = KB;
    return QD_OK;
}

qd_status qd__awq_capture(qd_qctx *c, const qd_block_w *w, qd_buf_t inputs, qd_buf_t outputs) {
    size_t S = c->o.seq_len, H = (size_t)c->cfg->hidden, E = c->cfg->moe_experts > 0 ? (size_t)c->cfg->moe_experts : 0;
    int moe = qd_block_is_moe(w);
    QD_CHECK(reset(c, w));
    if (moe) memset(c->expert_tokens, 0, E * sizeof *c->expert_tokens), memset(c->expert_all, 0, E);
    cache_cap cc = {.c = c, .w = w};
    qd_phase prev = qd_phase_set(c->be, QD_PH_FORWARD);
    qd_status st = QD_OK;
    for (size_t i = 0, s0 = 0; st == QD_OK && s0 < c->o.nseq; i++, s0 += c->chunk_seqs) {
        size_t ns = c->o.nseq - s0 < c->chunk_seqs ? c->o.nseq - s0 : c->chunk_seqs;
        cc.slab = i;
        st = qd_block_forward(c->fwd, &(struct qd_block_fwd_args){.w = w, .x = QD_REF(inputs, s0 * S * H),
                                                                  .out = QD_REF(outputs, s0 * S * H), .nseq = ns,
                                                                  .capture = cache_cb, .user = &cc, .stop_after = -1,
                                                                  .moe = {.tokens = moe ? c->expert_tokens : NULL}});
        if (st == QD_OK) close_slab(&cc);
    }
    if (st == QD_OK && moe) st = expert_pass(c, w, &cc);
    qd_phase_set(c->be, prev);
    QD_CHECK(st);
    double *t = malloc((size_t)c->nh * sizeof *t + 1); /* every key's rows over the ranks */
    if (!t) return qd_fail(QD_ERR_NOMEM, "awq: out of memory for %d row counts", c->nh);
    for (int k = 0; k < c->nh; k++) t[k] = (double)c->ain[k].rows;
    st = sum_counts(c, t, (size_t)c->nh);
    for (int k = 0; st == QD_OK && k < c->nh; k++) c->ain[k].total = (size_t)t[k];
    free(t);
    return st;
}
