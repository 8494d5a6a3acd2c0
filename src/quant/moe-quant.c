/* SPDX-License-Identifier: MIT
 * moe-quant.c - GPTQ of a mixture-of-experts block (quantize-internal.h): the four true-sequential
 * stages (MLA: five, everything shifted by one stage and two keys: qd_model_mlp_stage / mlp_key), every
 * expert's gate/up and down from Hessians of their own (keys 4 + 2e, 5 + 2e), and the
 * calibration rules of --moe-calibration / --moe-min-tokens. The all-token Hessian of the MLP input
 * is key 2 (the router's input, which the shared expert's gate/up share): an expert whose gate/up take
 * the all-token statistics gets a copy of it; its down input over every token comes from a forward
 * that sends every token through it (qd_moe_calib.all) for the statistics only. Expert parallel
 * (moe-ep.c) hooks in around each stage's forward and solve; the rest is the same on every layout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-phase.h"
#include "quantize-internal.h"

int qd__stage_first(const qd_block_w *w, int g) {
    for (int l = 0; l < w->nlin; l++)
        if (w->lin[l].stage == g) return l;
    return -1;
}

/* the routed counts of every rank summed (data-parallel ranks route their own sequences) */
static qd_status sum_tokens(qd_qctx *c, size_t E) {
    if (!c->coll || c->coll->size <= 1) return QD_OK;
    double *t = malloc(E * sizeof *t);
    if (!t) return qd_fail(QD_ERR_NOMEM, "moe: out of memory summing %zu expert counts", E);
    for (size_t e = 0; e < E; e++) t[e] = (double)c->expert_tokens[e];
    qd_status st = c->coll->allreduce_f64(c->coll, t, E);
    for (size_t e = 0; st == QD_OK && e < E; e++) c->expert_tokens[e] = (size_t)t[e];
    free(t);
    return st;
}

/* expert e takes the all-token statistics: --moe-calibration all, or too few routed tokens */
static int takes_all(const qd_qctx *c, size_t e) {
    return c->o.moe_all || c->expert_tokens[e] < c->o.moe_min_tokens;
}

/* stage 2 done: each expert that takes the all-token statistics gets the (reduced) key-2 Hessian */
static qd_status copy_all_token(qd_qctx *c, const qd_block_w *w) {
    const int KB = qd_model_mlp_key(c->cfg);
    size_t E = (size_t)c->cfg->moe_experts, K = c->gK[KB];
    int any = 0;
    for (size_t e = 0; e < E; e++) any |= takes_all(c, e);
    if (!any) return QD_OK;
    if (!c->reduced[KB]) QD_CHECK(qd__hess_total(c, KB)); /* every chunk's and rank's terms in H[KB] */
    c->reduced[KB] = 1;
    for (size_t e = 0; e < E; e++) {
        int key = KB + 2 + 2 * (int)e;
        if (!takes_all(c, e) || key >= c->nh || c->gK[key] != K) continue;
        if (c->ep && c->expert_owner[e] != c->coll->rank) continue; /* expert parallel: its owner's copy */
        if (c->ep) QD_CHECK(qd__ensure_H(c, key));
        QD_CHECK(qd_be_copy(c->be, &(struct qd_copy_args){.dst = QD_REF(c->H[key], 0), .src = QD_REF(c->H[KB], 0),
                                                          .rows = 1, .cols = K * K, .ldd = K * K, .lds = K * K}));
        if (c->slabs[key]) free(c->slabs[key]), c->slabs[key] = NULL, c->nslabs[key] = 0;
        qd_buf_free(c->Hacc[key]); /* its own (routed) sums are not used */
        c->Hacc[key] = NULL;
        c->reduced[key] = 1;
    }
    (void)w;
    return QD_OK;
}

/* the fallback each expert Linear quantized by GPTQ records (the report lists it) */
static void note_fallback(const qd_qctx *c, const qd_block_w *w, const qd_qspec *specs, qd_qresult *results) {
    for (int l = 0; l < w->nlin; l++) {
        int e = w->lin[l].expert;
        if (e < 0 || !results[l].q.codes || specs[l].method != QD_METHOD_GPTQ || c->o.moe_all ||
            !takes_all(c, (size_t)e))
            continue;
        qd_qstats *s = &results[l].s;
        size_t len = strlen(s->fallback);
        snprintf(s->fallback + len, sizeof s->fallback - len, "%sall-token Hessian: %zu routed tokens < "
                 "--moe-min-tokens %zu", len ? "; " : "", c->expert_tokens[e], c->o.moe_min_tokens);
        qd_info("model.layers.%d.%s: %s", w->index, w->lin[l].module, s->fallback);
    }
}

qd_status qd__moe_gptq(qd_qctx *c, qd_block_w *w, qd_buf_t in, qd_buf_t out, const qd_qspec *specs,
                       char (*names)[128], qd_qresult *results, unsigned need, qd_capture_fn hess, qd__hess_cap *h,
                       qd__stage_fn gptq_stage) {
    size_t E = (size_t)c->cfg->moe_experts;
    const int S = qd_model_mlp_stage(c->cfg), KB = qd_model_mlp_key(c->cfg);
    if (need & (1u << (S + 1))) need |= 1u << S; /* stage S's forward gives the routing the down stage needs */
    unsigned char *skip = calloc((size_t)c->nh, 1);
    if (!skip) return qd_fail(QD_ERR_NOMEM, "moe: out of memory for %d Hessian keys", c->nh);
    qd_status st = QD_OK;
    for (int g = 0; g < S + 2 && st == QD_OK; g++) {
        if (!(need & (1u << g))) continue;
        for (int l = 0; l < w->nlin && st == QD_OK; l++) /* every key of the stage, zeroed (experts: by owners) */
            if (w->lin[l].stage == g && w->lin[l].hkey < c->nh && !(c->ep && w->lin[l].expert >= 0))
                st = qd__ensure_H(c, w->lin[l].hkey);
        if (st != QD_OK) break;
        struct qd_moe_calib mc = {0};
        memset(skip, 0, (size_t)c->nh);
        if (g == S) { /* count the routing; the --moe-calibration all experts' gate/up copy key KB */
            memset(c->expert_tokens, 0, E * sizeof *c->expert_tokens);
            mc.tokens = c->expert_tokens;
            for (size_t e = 0; c->o.moe_all && e < E; e++) skip[KB + 2 + 2 * e] = 1;
        } else if (g == S + 1) {
            for (size_t e = 0; e < E; e++) c->expert_all[e] = (unsigned char)takes_all(c, e);
            mc.all = c->expert_all;
        }
        h->groups = 1u << g;
        h->skip_key = skip;
        qd__ep_box *box = NULL; /* expert parallel: the experts' rows kept for their owners */
        if (c->ep) st = qd__ep_box_new(c, w, hess, h, &box);
        if (st == QD_OK)
            st = qd__forward_all_moe(c, w, in, out, box ? qd__ep_capture : hess, box ? (void *)box : (void *)h,
                                     qd__stage_first(w, g), &mc);
        h->skip_key = NULL;
        if (st == QD_OK && g == S) st = sum_tokens(c, E);
        for (size_t e = 0; st == QD_OK && g == S && e < E; e++) c->expert_all[e] = (unsigned char)takes_all(c, e);
        if (st == QD_OK && g == S && box) st = qd__ep_owners(c);
        if (st == QD_OK && g == S) st = copy_all_token(c, w);
        if (st == QD_OK && box) st = qd__ep_deliver(box, g, g == S);
        qd__ep_box_free(box);
        if (st == QD_OK) st = gptq_stage(c, w, g, specs, names, results);
        if (st == QD_OK && c->ep) st = qd__ep_share(c, w, g, specs, results);
    }
    free(skip);
    if (st == QD_OK) note_fallback(c, w, specs, results);
    return st;
}

qd_status qd__moe_output(qd_qctx *c, qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_qresult *results) {
    size_t E = (size_t)c->cfg->moe_experts;
    memset(c->expert_tokens, 0, E * sizeof *c->expert_tokens);
    struct qd_moe_calib mc = {.tokens = c->expert_tokens};
    QD_CHECK(qd__forward_all_moe(c, w, in, out, NULL, NULL, -1, &mc));
    QD_CHECK(sum_tokens(c, E));
    for (int l = 0; l < w->nlin; l++) {
        int e = w->lin[l].expert;
        if (e < 0) continue;
        results[l].s.expert = e + 1;
        results[l].s.expert_tokens = c->expert_tokens[e];
    }
    return QD_OK;
}
