/* SPDX-License-Identifier: MIT
 * quantize.c - the per-block driver for RTN and GPTQ (qd-quantize.h); AWQ is in awq.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-phase.h"
#include "awq-internal.h"
#include "quantize-internal.h"

/* ---- GPTQ Hessians ---- */
typedef qd__hess_cap hess_cap;

static qd_status hess_cb(void *user, int l, qd_ref x, size_t rows) {
    hess_cap *h = user;
    const qd_linear *lin = &h->w->lin[l];
    int g = lin->hkey;
    if (!(h->groups & (1u << lin->stage)) || !rows || (h->skip_key && h->skip_key[g])) return QD_OK;
    qd_qctx *c = h->c;
    char name[128];
    snprintf(name, sizeof name, "model.layers.%d.%s", h->w->index, lin->module);
    qd_phase prev = qd_phase_set(c->be, QD_PH_HESSIAN);
    QD_CHECK(qd_check_finite(c->be, x.buf, x.off, rows * c->gK[g], "its input activations", name));
    int exact = qd_be_numerics(c->be) == QD_NUMERICS_EXACT;
    if (c->coll && exact) /* a slab from zero: the sum's order is fixed */
        QD_CHECK(qd__dp_hess_slab(c, g, x, rows, h->alpha));
    else /* upper_only: qd_gptq_factor completes it */
        QD_CHECK(qd_be_hessian(c->be, &(struct qd_hessian_args){.H = QD_REF(c->H[g], 0), .X = x, .T = rows,
                                                                .K = c->gK[g], .ldx = c->gK[g], .alpha = h->alpha,
                                                                .beta = exact ? 1.0f : 0.0f, .upper_only = 1}));
    if (!exact) /* this chunk's terms into the fp64 sum (qd__hess_total rounds it) */
        QD_CHECK(qd_be_acc64(c->be, &(struct qd_acc64_args){.kind = QD_ACC64_ADD, .acc = QD_REF(c->Hacc[g], 0),
                                                            .x = QD_REF(c->H[g], 0), .n = c->gK[g] * c->gK[g],
                                                            .upper_k = c->gK[g]}));
    qd_phase_set(c->be, prev);
    return QD_OK;
}

/* key g's Hessian from zero; fast numerics sum the chunks' terms in fp64 (Hacc) so that the sum does
 * not depend on how the chunks are spread over data-parallel ranks */
qd_status qd__ensure_H(qd_qctx *c, int g) {
    size_t K = c->gK[g];
    if (c->H[g] && qd_buf_len(c->H[g]) < K * K) { /* a key's K may differ between blocks (dense / MoE) */
        qd_buf_free(c->H[g]);
        c->H[g] = NULL;
    }
    if (!c->H[g]) QD_CHECK(qd_buf_alloc(c->be, K * K, &c->H[g]));
    c->reduced[g] = 0;
    if (qd_be_numerics(c->be) != QD_NUMERICS_EXACT) {
        if (c->Hacc[g] && qd_buf_len(c->Hacc[g]) < 2 * K * K) {
            qd_buf_free(c->Hacc[g]);
            c->Hacc[g] = NULL;
        }
        if (!c->Hacc[g]) QD_CHECK(qd_buf_alloc(c->be, 2 * K * K, &c->Hacc[g]));
        QD_CHECK(qd_be_fill(c->be, &(struct qd_fill_args){.dst = QD_REF(c->Hacc[g], 0), .n = 2 * K * K}));
    }
    return qd_be_fill(c->be, &(struct qd_fill_args){.dst = QD_REF(c->H[g], 0), .n = K * K});
}

/* the Hessian key Linear l is quantized with (c->hsrc: its own, or the all-token key it shares) */
static int src_key(const qd_qctx *c, const qd_block_w *w, int l) {
    int k = w->lin[l].hkey;
    return k >= 0 && k < c->nh ? c->hsrc[k] : k;
}

/* expert parallel (moe-ep.c): Linear l is an expert this rank solves whole (1), another rank's (2), or 0 */
static int owner_of(const qd_qctx *c, const qd_block_w *w, int l) {
    int k = w->lin[l].hkey;
    return k >= 0 && k < c->nh ? c->key_local[k] : 0;
}

/* the Linears of stage g with key k that the group's GPTQ pass quantizes: every one not skipped (a
 * module a recipe sends to RTN is then re-quantized by the RTN pass, as before the Linear table) */
static int gptq_on(const qd_qctx *c, const qd_block_w *w, const qd_qspec *specs, int l, int g, int k) {
    return w->lin[l].stage == g && src_key(c, w, l) == k && !specs[l].skip && owner_of(c, w, l) != 2;
}

/* quantize the Linears of group g with its Hessian. They share one factorization (qd_gptq_factor:
 * dead columns, act-order, damping, chol_inv) while their damp and act_order agree - the usual case, and
 * the same bits as one factorization each. A module whose settings differ from the previous one's gets
 * a new factorization, made from a copy of H unless no later module needs another one. */
static qd_status gptq_key(qd_qctx *c, qd_block_w *w, int g, int key, const qd_qspec *specs, char (*names)[128],
                          qd_qresult *results) {
    size_t K = c->gK[key];
    if (c->key_local[key] == 2) return QD_OK; /* expert parallel: its owner solves it (moe-ep.c) */
    int split = c->coll && c->coll->size > 1; /* the rows over the ranks, but an expert its owner solves whole */
    int last_factor = -1; /* the last module that starts a factorization: it may consume H */
    const qd_qspec *prev_spec = NULL;
    int anywhere = 0; /* quantized on some rank: the reduction of H is collective */
    for (int l = 0; l < w->nlin; l++) {
        anywhere |= w->lin[l].stage == g && src_key(c, w, l) == key && !specs[l].skip;
        if (!gptq_on(c, w, specs, l, g, key)) continue;
        if (!prev_spec || prev_spec->damp != specs[l].damp || !prev_spec->act_order != !specs[l].act_order)
            last_factor = l;
        prev_spec = &specs[l];
    }
    if (!anywhere) return QD_OK;
    if (!c->reduced[key]) QD_CHECK(qd__hess_total(c, key)); /* every chunk's and every rank's terms summed into H */
    c->reduced[key] = 1;
    if (last_factor < 0) return QD_OK; /* expert parallel: every one of them is another owner's */
    qd_gptq_fac f = {0};
    qd_status st = QD_OK;
    double fac_s = 0; /* factorization seconds, charged to the first module that uses it */
    for (int l = 0; l < w->nlin && st == QD_OK; l++) {
        if (!gptq_on(c, w, specs, l, g, key)) continue;
        if (!qd_gptq_fac_fits(&f, &specs[l])) {
            qd_gptq_fac_free(&f);
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            qd_buf_t H = c->H[key];
            if (l != last_factor) { /* H is consumed: factor a copy, a later module needs H again */
                qd_phase prev = qd_phase_set(c->be, QD_PH_CHOLESKY);
                if (!c->Hc || qd_buf_len(c->Hc) < K * K) {
                    qd_buf_free(c->Hc);
                    c->Hc = NULL;
                    st = qd_buf_alloc(c->be, K * K, &c->Hc);
                }
                if (st == QD_OK)
                    st = qd_be_copy(c->be, &(struct qd_copy_args){.dst = QD_REF(c->Hc, 0), .src = QD_REF(H, 0),
                                                                  .rows = 1, .cols = K * K, .ldd = K * K, .lds = K * K});
                H = c->Hc;
                qd_phase_set(c->be, prev);
                if (st != QD_OK) break;
            }
            st = qd_gptq_factor(c->be, names[l], &specs[l], H, K, &f);
            if (st != QD_OK) break;
            if (l == last_factor && c->Hc) { /* no more copies this group: give the copy's memory back */
                qd_buf_free(c->Hc);
                c->Hc = NULL;
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            fac_s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        }
        /* one rank: the sweep in place, without the row split's copies and gathers (the same bits) */
        st = split && owner_of(c, w, l) != 1
                 ? qd__dp_gptq_apply(c, names[l], &specs[l], w->w[l], w->n_out[l], w->n_in[l], &f, &results[l])
                     : qd_gptq_apply(c->be, names[l], &specs[l], w->w[l], w->n_out[l], w->n_in[l], &f, &results[l]);
        if (st != QD_OK) break;
        results[l].s.seconds += fac_s;
        fac_s = 0;
        results[l].s.calib_tokens = c->nseq_total * c->o.seq_len;
        st = qd__install(c, w, l, &results[l]);
        if (st != QD_OK) break;
        qd_info("%s: gptq w%d g%d loss %.6g damp %.4g %.2fs%s%s", names[l], specs[l].bits, specs[l].group_size,
                results[l].s.loss, results[l].s.damp, results[l].s.seconds, results[l].s.fallback[0] ? " - " : "",
                results[l].s.fallback);
    }
    qd_gptq_fac_free(&f);
    return st;
}

/* every key of stage g (keys != NULL: those set in keys), in table order (a dense block: the one key g) */
static qd_status gptq_group(qd_qctx *c, qd_block_w *w, int g, const qd_qspec *specs, char (*names)[128],
                            qd_qresult *results, const unsigned char *keys) {
    for (int l = 0; l < w->nlin; l++) {
        if (w->lin[l].stage != g) continue;
        int key = src_key(c, w, l), first = 1;
        if (keys && (key < 0 || key >= c->nh || !keys[key])) continue;
        for (int j = 0; j < l && first; j++) first = w->lin[j].stage != g || src_key(c, w, j) != key;
        if (first) QD_CHECK(gptq_key(c, w, g, key, specs, names, results));
    }
    return QD_OK;
}

/* ---- true-sequential GPTQ as ONE resident forward: each group's input is computed once, from the
 * already-quantized earlier groups, and kept for all rows (att, residual, act), so the block costs one
 * forward instead of five. Used when those caches fit opts.resident_max_bytes (default below); else the chunked re-forward
 * below does the same computation with less memory. */
#define QD_RESIDENT_MAX_BYTES (6ull << 30)

typedef struct {
    qd_qctx *c;
    hess_cap *h;
    int target;     /* the Linear whose input is kept */
    qd_buf_t store; /* where it goes (all rows) */
    size_t row0, K;
} resident_cap;

static qd_status resident_cb(void *user, int l, qd_ref x, size_t rows) {
    resident_cap *s = user;
    if (l != s->target) return QD_OK;
    QD_CHECK(hess_cb(s->h, l, x, rows));
    return qd_be_copy(s->c->be, &(struct qd_copy_args){.dst = QD_REF(s->store, s->row0 * s->K), .src = x, .rows = 1,
                                                       .cols = rows * s->K, .ldd = rows * s->K, .lds = rows * s->K});
}

static qd_status resident_alloc(qd_qctx *c) {
    size_t rows = c->o.nseq * c->o.seq_len, crow = c->chunk_seqs * c->o.seq_len;
    size_t H = (size_t)c->cfg->hidden, qo = c->gK[1], I = c->gK[3], wide = H > qo ? H : qo;
    if (!c->att) QD_CHECK(qd_buf_alloc(c->be, rows * qo, &c->att));
    if (!c->hres) QD_CHECK(qd_buf_alloc(c->be, rows * H, &c->hres));
    if (!c->act) QD_CHECK(qd_buf_alloc(c->be, rows * I, &c->act));
    if (!c->xn) QD_CHECK(qd_buf_alloc(c->be, crow * wide, &c->xn));
    if (!c->y) QD_CHECK(qd_buf_alloc(c->be, crow * H, &c->y));
    return QD_OK;
}

static qd_status gptq_resident(qd_qctx *c, qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_qspec *specs,
                             char (*names)[128], qd_qresult *results, hess_cap *h, unsigned need) {
    qd_backend_t be = c->be;
    const qd_model_cfg *cfg = c->cfg;
    size_t S = c->o.seq_len, H = (size_t)cfg->hidden, qo = c->gK[1], I = c->gK[3];
    QD_CHECK(resident_alloc(c));
    for (int g = 0; g < 4; g++) {
        qd_phase_set(be, QD_PH_FORWARD);
        if (need & (1u << g)) QD_CHECK(qd__ensure_H(c, g));
        h->groups = need & (1u << g);
        for (size_t s0 = 0; s0 < c->o.nseq; s0 += c->chunk_seqs) {
            size_t ns = c->o.nseq - s0 < c->chunk_seqs ? c->o.nseq - s0 : c->chunk_seqs, rows = ns * S, r0 = s0 * S;
            qd_ref x = QD_REF(in, r0 * H), xn = QD_REF(c->xn, 0), hres = QD_REF(c->hres, r0 * H);
            int stopped;
            switch (g) {
            case 0: /* q/k/v see RMSNorm_in(x) */
                QD_CHECK(qd_norm_forward(be, cfg, w->ln_in, x, xn, rows));
                QD_CHECK(hess_cb(h, QD_LIN_Q, xn, rows));
                break;
            case 1: { /* o sees the attention of the quantized q/k/v */
                resident_cap sc = {.c = c, .h = h, .target = QD_LIN_O, .store = c->att, .row0 = r0, .K = qo};
                QD_CHECK(qd_norm_forward(be, cfg, w->ln_in, x, xn, rows));
                QD_CHECK(qd_attn_forward(c->fwd, w, xn, QD_REF(c->y, 0), ns, resident_cb, &sc, QD_LIN_O, &stopped));
                break;
            }
            case 2: /* gate/up see RMSNorm_post(x + o(att)) */
                QD_CHECK(qd_linear_forward(be, w, QD_LIN_O, QD_REF(c->att, r0 * qo), QD_REF(c->y, 0), rows));
                QD_CHECK(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_ADD, .out = hres, .x = x,
                                                                 .y = QD_REF(c->y, 0), .rows = rows, .cols = H, .ld = H}));
                QD_CHECK(qd_norm_forward(be, cfg, w->ln_post, hres, xn, rows));
                QD_CHECK(hess_cb(h, QD_LIN_GATE, xn, rows));
                break;
            case 3: { /* down sees silu(gate) * up of the quantized gate/up */
                resident_cap sc = {.c = c, .h = h, .target = QD_LIN_DOWN, .store = c->act, .row0 = r0, .K = I};
                QD_CHECK(qd_norm_forward(be, cfg, w->ln_post, hres, xn, rows));
                QD_CHECK(qd_mlp_forward(c->fwd, w, xn, QD_REF(c->y, 0), rows, resident_cb, &sc, QD_LIN_DOWN, &stopped));
                break;
            }
            }
        }
        if (need & (1u << g)) QD_CHECK(gptq_group(c, w, g, specs, names, results, NULL));
    }
    /* the block output from the quantized down: out = residual + down(act) */
    qd_phase_set(be, QD_PH_FORWARD);
    for (size_t s0 = 0; s0 < c->o.nseq; s0 += c->chunk_seqs) {
        size_t ns = c->o.nseq - s0 < c->chunk_seqs ? c->o.nseq - s0 : c->chunk_seqs, rows = ns * S, r0 = s0 * S;
        QD_CHECK(qd_linear_forward(be, w, QD_LIN_DOWN, QD_REF(c->act, r0 * I), QD_REF(c->y, 0), rows));
        QD_CHECK(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_ADD, .out = QD_REF(out, r0 * H),
                                                         .x = QD_REF(c->hres, r0 * H), .y = QD_REF(c->y, 0),
                                                         .rows = rows, .cols = H, .ld = H}));
    }
    return QD_OK;
}

/* zero every Hessian key of stage g (a dense block: the key g; MLA: stage 1 holds keys 1 and 2) */
static qd_status ensure_stage(qd_qctx *c, const qd_block_w *w, int g) {
    if (!c->cfg->mla) return qd__ensure_H(c, g);
    for (int l = 0; l < w->nlin; l++)
        if (w->lin[l].stage == g && w->lin[l].hkey < c->nh) QD_CHECK(qd__ensure_H(c, w->lin[l].hkey));
    return QD_OK;
}

static qd_status gptq_block(qd_qctx *c, qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_qspec *specs,
                            char (*names)[128], qd_qresult *results, int *out_done) {
    hess_cap h = {.c = c, .w = w, .alpha = (float)(2.0 / (double)(c->nseq_total * c->o.seq_len))};
    unsigned need = 0;
    for (int l = 0; l < w->nlin; l++)
        if (!specs[l].skip && specs[l].method == QD_METHOD_GPTQ) need |= 1u << w->lin[l].stage;
    int rtn_any = 0;
    for (int l = 0; l < w->nlin; l++) rtn_any |= !specs[l].skip && specs[l].method == QD_METHOD_RTN;
    size_t resident_bytes = qd_quantize_resident_bytes(c->cfg, &c->o);
    *out_done = 0;
    if (qd_block_is_moe(w))
        return qd__moe_gptq(c, w, in, out, specs, names, results, need, hess_cb, &h, gptq_group);
    const int NS = qd_model_nstages(c->cfg);
    if (c->o.true_sequential && !rtn_any && !c->cfg->mla &&
        resident_bytes <= (c->o.resident_max_bytes ? c->o.resident_max_bytes : QD_RESIDENT_MAX_BYTES)) {
        *out_done = 1;
        return gptq_resident(c, w, in, out, specs, names, results, &h, need);
    }
    if (c->o.true_sequential) {
        for (int g = 0; g < NS; g++) {
            if (!(need & (1u << g))) continue;
            QD_CHECK(ensure_stage(c, w, g));
            h.groups = 1u << g;
            QD_CHECK(qd__forward_all(c, w, in, out, hess_cb, &h, qd__stage_first(w, g)));
            QD_CHECK(gptq_group(c, w, g, specs, names, results, NULL));
        }
    } else {
        for (int g = 0; g < NS; g++)
            if (need & (1u << g)) QD_CHECK(ensure_stage(c, w, g));
        h.groups = need;
        QD_CHECK(qd__forward_all(c, w, in, out, hess_cb, &h, -1));
        for (int g = 0; g < NS; g++)
            if (need & (1u << g)) QD_CHECK(gptq_group(c, w, g, specs, names, results, NULL));
    }
    return QD_OK;
}

static qd_status quantize_block(qd_qctx *c, qd_block_w *w, qd_buf_t inputs, qd_buf_t outputs, qd_qresult *results,
                                qd_qspec *specs, char (*names)[128]) {
    memset(results, 0, (size_t)w->nlin * sizeof *results);
    qd__set_keys(c, w);
    qd__h_forget(c); /* outputs holds nothing of this block yet */
    int any_gptq = 0, any_awq = 0;
    for (int l = 0; l < w->nlin; l++) {
        qd_qctx_spec(c, w->index, &w->lin[l], &specs[l], names[l], sizeof names[l]);
        if (specs[l].skip) continue;
        size_t G;
        QD_CHECK(qd_qspec_groups(&specs[l], names[l], w->n_in[l], &G));
        any_gptq |= specs[l].method == QD_METHOD_GPTQ;
        any_awq |= specs[l].method == QD_METHOD_AWQ;
    }
    size_t rows = c->o.nseq * c->o.seq_len, H = (size_t)c->cfg->hidden;
    if ((any_gptq || any_awq) && (!c->fwd || !inputs || !outputs))
        return qd_fail(QD_ERR_USAGE, "block %d: GPTQ and AWQ need calibration inputs", w->index);
    if (inputs) {
        char what[64];
        snprintf(what, sizeof what, "block %d", w->index);
        qd_phase_set(c->be, QD_PH_FORWARD);
        QD_CHECK(qd_check_finite(c->be, inputs, 0, rows * H, "the activations entering the block", what));
    }
    if (c->o.kv_cache) QD_CHECK(qd__kv_observe(c, w, inputs)); /* before any weight of the block changes */
    if (any_awq) {
        if (any_gptq) return qd_fail(QD_ERR_UNSUPPORTED, "block %d: AWQ and GPTQ cannot be mixed in one block", w->index);
        if (c->o.smooth) return qd_fail(QD_ERR_UNSUPPORTED, "block %d: --smoothquant with AWQ modules", w->index);
        return qd__awq_block(c, w, inputs, outputs, results);
    }
    if (c->o.smooth) { /* before anything reads the weights: every method below sees the smoothed block */
        if (!c->fwd || !inputs || !outputs)
            return qd_fail(QD_ERR_USAGE, "block %d: --smoothquant needs calibration inputs (--calib)", w->index);
        QD_CHECK(qd__smooth_block(c, w, inputs, outputs, specs));
    }
    QD_CHECK(qd__fp4_fuse_globals(c, w, specs, names)); /* from the weights the methods below start from */
    /* RTN modules first (they need no calibration): GPTQ's Hessians of the later groups then see them
     * quantized, as true-sequential means (only fp8 overrides put RTN modules in a GPTQ block) */
    for (int l = 0; l < w->nlin; l++) {
        if (specs[l].skip || specs[l].method != QD_METHOD_RTN) continue;
        if (qd_scheme_is_float(specs[l].scheme))
            QD_CHECK(qd_float_rtn_layer(c->be, names[l], &specs[l], w->w[l], w->n_out[l], w->n_in[l], &results[l]));
        else QD_CHECK(qd_rtn_layer(c->be, names[l], &specs[l], w->w[l], w->n_out[l], w->n_in[l], &results[l]));
        if (inputs) {
            QD_CHECK(qd__install(c, w, l, &results[l]));
        } else { /* no forward reads the block again, and staging and export take the results: no install */
            qd_buf_free(results[l].dev_codes);
            results[l].dev_codes = NULL;
        }
    }
    int out_done = 0;
    if (any_gptq) QD_CHECK(gptq_block(c, w, inputs, outputs, specs, names, results, &out_done));
    if (qd__wants_static_scales(w, specs)) QD_CHECK(qd__static_input_scales(c, w, inputs, specs, results));
    /* the next block sees the quantized block's output (an MoE block's: with its routed token counts) */
    if (inputs && outputs && !out_done && qd_block_is_moe(w)) QD_CHECK(qd__moe_output(c, w, inputs, outputs, results));
    else if (inputs && outputs && !out_done) QD_CHECK(qd__forward_all(c, w, inputs, outputs, NULL, NULL, -1));
    return QD_OK;
}

qd_status qd_quantize_block(qd_qctx *c, qd_block_w *w, qd_buf_t inputs, qd_buf_t outputs, qd_qresult *results) {
    qd_qspec *specs = calloc((size_t)w->nlin + 1, sizeof *specs);
    char (*names)[128] = calloc((size_t)w->nlin + 1, sizeof *names);
    if (!specs || !names) {
        free(specs), free(names);
        return qd_fail(QD_ERR_NOMEM, "block %d: out of memory for %d Linears", w->index, w->nlin);
    }
    qd_phase prev = qd_phase_set(c->be, QD_PH_OTHER);
    qd_status st = quantize_block(c, w, inputs, outputs, results, specs, names);
    qd_phase_set(c->be, prev);
    free(specs), free(names);
    return st;
}

size_t qd_quantize_resident_bytes(const qd_model_cfg *cfg, const qd_quantize_opts *o) {
    int64_t att, mlp; /* the inputs of o_proj and down_proj, kept with the residual */
    qd_model_linear_shape(cfg, QD_LIN_O, NULL, &att);
    qd_model_linear_shape(cfg, QD_LIN_DOWN, NULL, &mlp);
    return o->nseq * o->seq_len * ((size_t)att + (size_t)cfg->hidden + (size_t)mlp) * 4;
}

size_t qd_quantize_moe_hess_bytes(const qd_model_cfg *cfg) {
    size_t E = cfg->moe_experts > 0 ? (size_t)cfg->moe_experts : 0, H = (size_t)cfg->hidden;
    size_t mi = (size_t)cfg->moe_inter;
    return E * 3 * (H * H + mi * mi) * sizeof(float);
}

size_t qd_quantize_work_bytes(const qd_model_cfg *cfg, const qd_quantize_opts *o) {
    int64_t q_n, kv_n, gate_n, n, k;
    qd_model_linear_shape(cfg, QD_LIN_Q, &q_n, NULL);
    qd_model_linear_shape(cfg, QD_LIN_K, &kv_n, NULL);
    qd_model_linear_shape(cfg, QD_LIN_GATE, &gate_n, NULL);
    size_t H = (size_t)cfg->hidden, I = (size_t)gate_n, qo = (size_t)q_n, kvo = (size_t)kv_n, wide = H > qo ? H : qo;
    size_t rows = o->nseq * o->seq_len, weights = 0;
    int nl = qd_model_max_linears(cfg);
    qd_linear *lin = calloc((size_t)nl, sizeof *lin);
    for (int b = 0; lin && b < cfg->nlayers; b++) { /* the largest block, fp32 */
        size_t wb = 0;
        int m = qd_model_linears(cfg, b, lin, nl);
        for (int l = 0; l < m; l++) wb += (size_t)lin[l].N * (size_t)lin[l].K;
        weights = wb > weights ? wb : weights;
    }
    free(lin);
    (void)n, (void)k;
    size_t tokens = o->chunk_tokens ? o->chunk_tokens : 8192, seqs = o->seq_len ? tokens / o->seq_len : 0;
    if (!seqs) seqs = 1;
    if (seqs > o->nseq) seqs = o->nseq;
    size_t crow = seqs * o->seq_len;
    size_t hess = 2 * H * H + qo * qo + I * I + 2 * I * I; /* four Hessians (no copy), the largest's fp64 sum */
    size_t fwd = crow * (wide + 2 * qo + 2 * kvo + 2 * H + 2 * I) + crow * (wide + H); /* forward + resident scratch */
    if (cfg->moe_experts > 0) { /* one expert's two Hessians with their fp64 sums (the others are batched in
                                  * o->moe_hess_bytes), the gathered rows, logits and routing */
        size_t E = (size_t)cfg->moe_experts, mi = (size_t)cfg->moe_inter, si = (size_t)cfg->moe_shared_inter;
        hess += 3 * (H * H + mi * mi) + si * si;
        fwd += crow * (2 * H + E + 2 * (size_t)cfg->moe_topk + 1);
    }
    if (cfg->mla) { /* mla.c's per-chunk scratch: q, k, v (padded), attention out, kv, rope copies, latents */
        const qd_dsv3_cfg *d = &cfg->dsv3;
        size_t nh = (size_t)cfg->nheads, QK = (size_t)d->qk_head_dim, R = (size_t)d->qk_rope_head_dim;
        fwd += crow * (nh * (4 * QK + (size_t)d->qk_nope_head_dim + 2 * (size_t)d->v_head_dim + 2 * R) +
                       (size_t)d->q_lora_rank + 2 * (size_t)d->kv_lora_rank + R);
    }
    if (o->kv_cache) fwd += crow * (H + 2 * kvo + (size_t)cfg->head_dim); /* kv-observe.c's scratch */
    size_t layer = I * I * 2 + 3 * H * I; /* chol's fp64 copy (U is made in H), W/codes/Wp */
    size_t scratch = (crow * I + H * I) / 2;                                  /* bf16 operands of one GEMM */
    size_t awq = 0;
    if (o->base.method == QD_METHOD_AWQ) awq = rows * (2 * H + qo + I) + 2 * rows * H + 3 * H * I;
    if (o->base.method == QD_METHOD_AWQ && cfg->moe_experts > 0) { /* the experts' kept inputs, their gate/up copies */
        size_t E = (size_t)cfg->moe_experts, mi = (size_t)cfg->moe_inter, si = (size_t)cfg->moe_shared_inter;
        size_t routed = o->moe_all ? E * rows : rows * (size_t)cfg->moe_topk;
        awq += routed * (H + mi) + rows * si + 2 * (E * mi + si) * H;
    }
    if (qd_scheme_static_act(o->base.scheme)) awq += rows * H; /* the observing forward's output */
    return 4 * (weights + hess + fwd + layer + scratch + awq);
}