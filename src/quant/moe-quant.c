/* SPDX-License-Identifier: MIT
 * moe-quant.c - GPTQ of a mixture-of-experts block (quantize-internal.h): the four true-sequential
 * stages (MLA: five, everything shifted by one stage and two keys: qd_model_mlp_stage / mlp_key), every
 * expert's gate/up and down from Hessians of their own (keys KB + 2 + 2e, KB + 3 + 2e), and the
 * calibration rules of --moe-calibration / --moe-min-tokens. The all-token Hessian of the MLP input
 * is key KB (the router's input, which the shared expert's gate/up share): an expert whose gate/up take
 * the all-token statistics is quantized with key KB's one factorization (c->hsrc), never a copy of it;
 * its down input over every token comes from a forward that sends every token through it
 * (qd_moe_calib.all) for the statistics only.
 *
 * Memory: only the Hessians of one batch of experts are held at once (o.moe_hess_bytes; 256 experts of
 * width 7168 would need > 150 GB). Each MLP stage loops over batches of the list of experts this rank
 * solves: a forward that captures the batch's inputs (the first one also the stage's other keys and the
 * routed counts), then the batch's GPTQ, then its Hessians given back. Each Hessian is made from the
 * same chunks in the same order whatever the batch, and the keys are solved in list order, so the
 * results, and the sequence of collectives of data-parallel ranks, do not depend on the batching.
 *
 * Expert parallel (moe-ep.c) replaces the batches: one pass per MLP stage keeps every expert's rows
 * for its owner rank, which then holds and solves only its own experts' Hessians.
 *
 * The attention runs once for the MLP stages: their first pass leaves the post-attention residual sum
 * in the output buffer (which no stopped pass writes), and the later passes and the block's output
 * start from it (h_mode_for; qd-forward.h qd_fwd_h), with the routing of each chunk that the first pass
 * kept (c->keeps): a batch of experts costs its own experts' work, not a router and top-k again.
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

/* expert e's Hessian key in the MLP's stage S (gate/up) or S + 1 (down) */
static int expert_key(const qd_qctx *c, size_t e, int down) {
    return qd_model_mlp_key(c->cfg) + 2 + 2 * (int)e + down;
}

/* The experts this rank solves, in the order it solves them: every expert, in index order. (Expert
 * parallel ranks give each rank a list of its own; the batching below works on any list.) */
static size_t solve_list(const qd_qctx *c, size_t *list) {
    size_t n = 0;
    for (size_t e = 0; e < (size_t)c->cfg->moe_experts; e++) list[n++] = e;
    return n;
}

/* key k's Hessian memory given back (its Linears are quantized, or it takes the all-token key) */
static void drop_key(qd_qctx *c, int k) {
    qd_buf_free(c->H[k]), qd_buf_free(c->Hacc[k]);
    c->H[k] = c->Hacc[k] = NULL;
    free(c->slabs[k]);
    c->slabs[k] = NULL, c->nslabs[k] = 0;
    c->reduced[k] = 0;
}

/* experts per batch whose Hessians of K inputs fit o.moe_hess_bytes (fp32 H, plus the fp64 sum in fast
 * numerics); at least one, at most n */
static size_t batch_size(const qd_qctx *c, size_t K, size_t n) {
    size_t per = K * K * sizeof(float) * (qd_be_numerics(c->be) == QD_NUMERICS_EXACT ? 1 : 3);
    size_t b = c->o.moe_hess_bytes ? c->o.moe_hess_bytes / (per ? per : 1) : n;
    return b < 1 ? 1 : b > n ? n : b;
}

/* Where a pass of stage g takes the MLP input from. The MLP stages' passes stop before they write out,
 * so the first one leaves the post-attention residual sum there (SAVE) and the later ones - the down
 * stage, further batches of experts, the block's output - read it instead of running the attention
 * again (REUSE): every attention Linear is quantized and installed before the MLP's first stage. */
static qd_fwd_h h_mode_for(const qd_qctx *c, const qd_block_w *w, qd_buf_t in, qd_buf_t out, int g) {
    if (g < qd_model_mlp_stage(c->cfg) || in == out) return QD_FWD_H_COMPUTE;
    return c->h_in_out == w->index ? QD_FWD_H_REUSE : QD_FWD_H_SAVE;
}

/* before a pass with mode m: a SAVE pass starts from nothing kept (it keeps h and the routing anew) */
static void h_before(qd_qctx *c, qd_fwd_h m) {
    if (m == QD_FWD_H_SAVE) qd__h_forget(c);
}

/* a pass made with mode m ended with status st: what out holds now */
static void h_after(qd_qctx *c, const qd_block_w *w, qd_fwd_h m, qd_status st) {
    if (st != QD_OK) qd__h_forget(c);
    else if (m == QD_FWD_H_SAVE) c->h_in_out = w->index;
}

/* One pass of stage g over every chunk: the keys set in on (zeroed first) accumulate; the experts of
 * cap[] are the ones gathered and computed. */
static qd_status capture_pass(qd_qctx *c, qd_block_w *w, qd_buf_t in, qd_buf_t out, int g, unsigned char *on,
                              qd_capture_fn hess, qd__hess_cap *h, struct qd_moe_calib *mc) {
    for (int k = 0; k < c->nh; k++)
        if (on[k]) QD_CHECK(qd__ensure_H(c, k));
    for (int k = 0; k < c->nh; k++) on[k] = !on[k]; /* hess_cb's skip list: every key not on */
    h->groups = 1u << g;
    h->skip_key = on;
    qd_fwd_h m = h_mode_for(c, w, in, out, g);
    h_before(c, m);
    qd_status st = qd__forward_all_moe(c, w, in, out, hess, h, qd__stage_first(w, g), mc, m);
    h_after(c, w, m, st);
    h->skip_key = NULL;
    for (int k = 0; k < c->nh; k++) on[k] = !on[k];
    return st;
}

typedef struct {
    qd_qctx *c;
    qd_block_w *w;
    qd_buf_t in, out;
    const qd_qspec *specs;
    char (*names)[128];
    qd_qresult *results;
    qd_capture_fn hess;
    qd__hess_cap *h;
    qd__stage_fn gptq_stage;
    const size_t *list; /* the experts this rank solves */
    size_t n;
    unsigned char *on;  /* [nh] the keys of this pass */
    unsigned char *cap; /* [experts] the experts of this pass */
} moe_run;

/* the keys of stage g that belong to no routed expert (the router's all-token key, the shared expert's) */
static void set_other_keys(const moe_run *r, int g) {
    for (int l = 0; l < r->w->nlin; l++)
        if (r->w->lin[l].stage == g && r->w->lin[l].expert < 0 && r->w->lin[l].hkey < r->c->nh)
            r->on[r->w->lin[l].hkey] = 1;
}

/* Stage g of the MLP (down = 0: gate/up, stage S; 1: down, S + 1) over the batches of r->list. The gate/up
 * stage's first pass also counts the routing (summed over the ranks), which decides the experts that take
 * the all-token statistics: their gate/up are quantized with key KB's factorization, in the first
 * batch's GPTQ, and they need no Hessian of their own. */
static qd_status mlp_stage(moe_run *r, int g, int down) {
    qd_qctx *c = r->c;
    size_t E = (size_t)c->cfg->moe_experts, K = 0;
    const int KB = qd_model_mlp_key(c->cfg);
    for (size_t i = 0; i < r->n && !K; i++) K = c->gK[expert_key(c, r->list[i], down)];
    size_t B = batch_size(c, K, r->n), nb = 0, i = 0;
    if (!down) memset(c->expert_tokens, 0, E * sizeof *c->expert_tokens);
    for (int first = 1; first || i < r->n; first = 0, nb++) {
        memset(r->on, 0, (size_t)c->nh), memset(r->cap, 0, E);
        if (first) set_other_keys(r, g);
        struct qd_moe_calib mc = {.capture = r->cap, .no_shared = !first};
        if (down) {
            for (size_t e = 0; e < E; e++) c->expert_all[e] = 0;
            mc.all = c->expert_all;
        } else if (first) {
            mc.tokens = c->expert_tokens;
        }
        /* the batch: the next B experts of the list that need a Hessian of their own (after the first
         * gate/up pass, the ones taking the all-token statistics do not) */
        for (size_t taken = 0; i < r->n && taken < B; i++) {
            size_t e = r->list[i];
            if (!down && (c->o.moe_all || (!first && takes_all(c, e)))) continue;
            int k = expert_key(c, e, down);
            if (k >= c->nh) continue;
            r->on[k] = 1, r->cap[e] = 1, taken++;
            if (down) c->expert_all[e] = (unsigned char)takes_all(c, e);
        }
        int any = 0;
        for (int k = 0; k < c->nh && !any; k++) any = r->on[k];
        if (!any && !first) break;
        QD_CHECK(capture_pass(c, r->w, r->in, r->out, g, r->on, r->hess, r->h, &mc));
        if (!down && first) {
            QD_CHECK(sum_tokens(c, E));
            for (size_t j = 0; j < r->n; j++) { /* this rank's experts that take the all-token statistics */
                size_t e = r->list[j];
                int k = expert_key(c, e, 0);
                if (!takes_all(c, e) || k >= c->nh) continue;
                c->hsrc[k] = KB; /* its gate/up: key KB's Hessian and factorization */
                if (r->on[k]) drop_key(c, k), r->on[k] = 0;
            }
            r->on[KB] = 1;
        }
        QD_CHECK(r->gptq_stage(c, r->w, g, r->specs, r->names, r->results, r->on));
        for (int k = 0; k < c->nh; k++)
            if (r->on[k] && k != KB && k != KB + 1) drop_key(c, k);
    }
    if (nb > 1)
        qd_info("block %d: %zu experts' %s Hessians in %zu passes of at most %zu (%.3g GB of expert Hessians at once; "
                "QD_MOE_HESS_MIB)", r->w->index, r->n, down ? "down" : "gate/up", nb, B,
                (double)c->o.moe_hess_bytes / 1e9);
    return QD_OK;
}

/* Stage g of the MLP with expert parallel ranks (moe-ep.c): one pass over every chunk counts the routing
 * (gate/up stage), accumulates the keys of no routed expert here, and keeps every expert's rows; after
 * the owners are placed the rows go to them, each owner solves its experts whole and shares them. An
 * expert that takes the all-token statistics is quantized with key KB (its rows are not sent). */
static qd_status mlp_stage_ep(moe_run *r, int g, int down) {
    qd_qctx *c = r->c;
    size_t E = (size_t)c->cfg->moe_experts;
    const int KB = qd_model_mlp_key(c->cfg);
    unsigned char *skip = malloc((size_t)c->nh + 1);
    if (!skip) return qd_fail(QD_ERR_NOMEM, "expert parallel: out of memory for %d Hessian keys", c->nh);
    memset(r->on, 0, (size_t)c->nh), memset(r->cap, 1, E), memset(skip, 1, (size_t)c->nh);
    set_other_keys(r, g);
    qd_status st = QD_OK;
    for (int k = 0; k < c->nh && st == QD_OK; k++)
        if (r->on[k]) skip[k] = 0, st = qd__ensure_H(c, k);
    for (size_t e = 0; e < E; e++) { /* the experts' keys: kept for their owners (moe_all's gate/up: not at all) */
        int k = expert_key(c, e, down);
        if (k < c->nh && (down || !c->o.moe_all)) skip[k] = 0;
    }
    struct qd_moe_calib mc = {.capture = r->cap};
    if (down) {
        for (size_t e = 0; e < E; e++) c->expert_all[e] = (unsigned char)takes_all(c, e);
        mc.all = c->expert_all;
    } else {
        memset(c->expert_tokens, 0, E * sizeof *c->expert_tokens);
        mc.tokens = c->expert_tokens;
    }
    qd__ep_box *box = NULL;
    if (st == QD_OK) st = qd__ep_box_new(c, r->w, r->hess, r->h, &box);
    r->h->groups = 1u << g;
    r->h->skip_key = skip;
    qd_fwd_h m = h_mode_for(c, r->w, r->in, r->out, g);
    h_before(c, m);
    if (st == QD_OK) {
        st = qd__forward_all_moe(c, r->w, r->in, r->out, qd__ep_capture, box, qd__stage_first(r->w, g), &mc, m);
        h_after(c, r->w, m, st);
    }
    r->h->skip_key = NULL;
    if (st == QD_OK && !down) {
        st = sum_tokens(c, E);
        for (size_t e = 0; st == QD_OK && e < E; e++) {
            c->expert_all[e] = (unsigned char)takes_all(c, e);
            int k = expert_key(c, e, 0);
            if (c->expert_all[e] && k < c->nh) c->hsrc[k] = KB; /* its gate/up: key KB's factorization */
        }
        if (st == QD_OK) st = qd__ep_owners(c);
    }
    if (st == QD_OK) st = qd__ep_deliver(box, g, !down);
    qd__ep_box_free(box);
    free(skip);
    if (st == QD_OK) st = r->gptq_stage(c, r->w, g, r->specs, r->names, r->results, NULL);
    if (st == QD_OK) st = qd__ep_share(c, r->w, g, r->specs, r->results);
    for (size_t e = 0; st == QD_OK && e < E; e++) {
        int k = expert_key(c, e, down);
        if (k < c->nh && k != KB && k != KB + 1) drop_key(c, k);
    }
    return st;
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
    const int S = qd_model_mlp_stage(c->cfg);
    if (need & (1u << (S + 1))) need |= 1u << S; /* stage S's forward gives the routing the down stage needs */
    moe_run r = {.c = c, .w = w, .in = in, .out = out, .specs = specs, .names = names, .results = results,
                 .hess = hess, .h = h, .gptq_stage = gptq_stage, .list = NULL};
    size_t *list = malloc(E * sizeof *list + 1);
    r.on = calloc((size_t)c->nh, 1), r.cap = calloc(E + 1, 1);
    qd_status st = list && r.on && r.cap ? QD_OK : qd_fail(QD_ERR_NOMEM, "moe: out of memory for %d Hessian keys", c->nh);
    if (st == QD_OK) r.list = list, r.n = solve_list(c, list);
    for (int g = 0; g < S + 2 && st == QD_OK; g++) {
        if (!(need & (1u << g))) continue;
        if (g >= S) {
            st = c->ep ? mlp_stage_ep(&r, g, g - S) : mlp_stage(&r, g, g - S);
            continue;
        }
        memset(r.on, 0, (size_t)c->nh); /* an attention stage: every key of it */
        for (int l = 0; l < w->nlin; l++)
            if (w->lin[l].stage == g && w->lin[l].hkey < c->nh) r.on[w->lin[l].hkey] = 1;
        struct qd_moe_calib mc = {0};
        st = capture_pass(c, w, in, out, g, r.on, hess, h, &mc);
        if (st == QD_OK) st = gptq_stage(c, w, g, specs, names, results, NULL);
    }
    free(list), free(r.on), free(r.cap);
    if (st == QD_OK) note_fallback(c, w, specs, results);
    return st;
}

qd_status qd__moe_output(qd_qctx *c, qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_qresult *results) {
    size_t E = (size_t)c->cfg->moe_experts;
    memset(c->expert_tokens, 0, E * sizeof *c->expert_tokens);
    struct qd_moe_calib mc = {.tokens = c->expert_tokens};
    qd_fwd_h m = c->h_in_out == w->index && in != out ? QD_FWD_H_REUSE : QD_FWD_H_COMPUTE;
    qd_status st = qd__forward_all_moe(c, w, in, out, NULL, NULL, -1, &mc, m);
    qd__h_forget(c); /* out is the block's output from here on */
    QD_CHECK(st);
    QD_CHECK(sum_tokens(c, E));
    for (int l = 0; l < w->nlin; l++) {
        int e = w->lin[l].expert;
        if (e < 0) continue;
        results[l].s.expert = e + 1;
        results[l].s.expert_tokens = c->expert_tokens[e];
    }
    return QD_OK;
}
