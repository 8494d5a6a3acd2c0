/* SPDX-License-Identifier: MIT
 * moe-ep.c - expert parallel (quantize-internal.h): with data-parallel ranks, each routed expert of an
 * MoE block has one owner rank that accumulates and solves its Hessians whole, instead of every rank
 * accumulating every expert and all-reducing E (H^2 + I^2) fp64 sums.
 *
 * During a stage's forward each rank keeps, in host memory and in capture order, the rows each expert
 * Linear's capture sees (one record per capture call: one chunk's routed rows). After the forward the
 * records go to the experts' owners (alltoallv); an owner replays them into the Hessian capture in
 * source-rank order, and ranks own contiguous chunks in rank order, so every expert's Hessian gets the
 * same per-chunk terms in the same chunk order as on one rank: the same bits. The owner then solves
 * its experts whole (quantize.c's gptq_key, c->key_local 1) and the results are gathered so that every
 * rank installs every expert (the output forward needs them all).
 *
 * Owners: the experts in descending order of their routed token count over every rank (an expert that
 * takes the all-token statistics counts every token), ties by index; each goes to the rank with the
 * fewest tokens so far, ties by fewest experts, then lowest rank. Deterministic: every rank computes it
 * from the same reduced counts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-phase.h"
#include "quantize-internal.h"

typedef struct {
    int32_t lin, pad;
    uint64_t rows;
} ep_rec; /* followed by rows x K floats */

struct qd__ep_box {
    qd_qctx *c;
    const qd_block_w *w;
    qd_capture_fn hess;
    qd__hess_cap *h;
    char *buf;
    size_t len, cap;
};

int qd__ep_choose(const qd_model_cfg *cfg, const qd_quantize_opts *o) {
    const struct qd_collective *cl = o->coll;
    if (o->expert_parallel < 0 || !cl || cl->size <= 1 || cfg->moe_experts <= 0 || !o->nseq) return 0;
    if (o->base.method == QD_METHOD_AWQ) return 0; /* AWQ's experts stay data parallel (awq-cache.c) */
    if (o->expert_parallel > 0) return 1;
    /* auto: the bytes one block moves. Data parallel all-reduces every expert's fp64 Hessian sums,
     * E (H^2 + I^2) x 8; expert parallel sends the routed rows that leave their rank, T k (H + I) x 4 x
     * (P-1)/P, plus with the all-token statistics every token's down input once per expert, E T I x 4.
     * Both gather the quantized experts alike. */
    double E = cfg->moe_experts, H = cfg->hidden, I = cfg->moe_inter, T = (double)o->nseq * (double)o->seq_len,
           k = cfg->moe_topk, P = cl->size;
    double dp = E * (H * H + I * I) * 8, ep = T * k * (H + I) * 4 * (P - 1) / P + (o->moe_all ? E * T * I * 4 : 0);
    return ep < dp;
}

qd_status qd__ep_owners(qd_qctx *c) {
    size_t E = (size_t)c->cfg->moe_experts, T = c->nseq_total * c->o.seq_len, P = (size_t)c->coll->size;
    double *load = calloc(P, sizeof *load);
    size_t *nexp = calloc(P, sizeof *nexp);
    unsigned char *done = calloc(E, 1);
    if (!load || !nexp || !done) {
        free(load), free(nexp), free(done);
        return qd_fail(QD_ERR_NOMEM, "expert parallel: out of memory placing %zu experts", E);
    }
    for (size_t n = 0; n < E; n++) {
        size_t best = E;
        double bw = -1;
        for (size_t e = 0; e < E; e++) { /* the heaviest expert not yet placed (ties: the lower index) */
            double we = c->expert_all[e] ? (double)T : (double)c->expert_tokens[e];
            if (!done[e] && we > bw) best = e, bw = we;
        }
        size_t to = 0;
        for (size_t r = 1; r < P; r++)
            if (load[r] < load[to] || (load[r] == load[to] && nexp[r] < nexp[to])) to = r;
        c->expert_owner[best] = (int)to;
        load[to] += bw, nexp[to]++, done[best] = 1;
    }
    free(load), free(nexp), free(done);
    return QD_OK;
}

qd_status qd__ep_box_new(qd_qctx *c, const qd_block_w *w, qd_capture_fn hess, qd__hess_cap *h, qd__ep_box **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return qd_fail(QD_ERR_NOMEM, "expert parallel: out of memory");
    **out = (qd__ep_box){.c = c, .w = w, .hess = hess, .h = h};
    return QD_OK;
}

void qd__ep_box_free(qd__ep_box *b) {
    if (b) free(b->buf);
    free(b);
}

qd_status qd__ep_capture(void *user, int l, qd_ref x, size_t rows) {
    qd__ep_box *b = user;
    const qd_linear *lin = &b->w->lin[l];
    if (lin->expert < 0) return b->hess(b->h, l, x, rows); /* router, shared expert: data parallel */
    if (!(b->h->groups & (1u << lin->stage)) || !rows || (b->h->skip_key && b->h->skip_key[lin->hkey])) return QD_OK;
    size_t K = b->c->gK[lin->hkey], need = sizeof(ep_rec) + rows * K * sizeof(float);
    if (b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap : need;
        while (cap < b->len + need) cap *= 2;
        char *t = realloc(b->buf, cap);
        if (!t) return qd_fail(QD_ERR_NOMEM, "expert parallel: out of memory keeping %zu bytes of expert rows", cap);
        b->buf = t, b->cap = cap;
    }
    ep_rec r = {.lin = l, .rows = rows};
    memcpy(b->buf + b->len, &r, sizeof r);
    qd_phase prev = qd_phase_set(b->c->be, QD_PH_TRANSFER);
    qd_status st = qd_be_download(b->c->be, &(struct qd_download_args){.src = x, .dst = b->buf + b->len + sizeof r,
                                                                       .n = rows * K});
    qd_phase_set(b->c->be, prev);
    if (st == QD_OK) b->len += need;
    return st;
}

/* a record the owner does not need: gate/up of an expert that takes the all-token Hessian (a copy) */
static int dropped(const qd_qctx *c, const qd_linear *lin, int gate_up) { return gate_up && c->expert_all[lin->expert]; }

static size_t rec_bytes(const qd_qctx *c, const qd_block_w *w, const char *p, int *lin) {
    ep_rec r;
    memcpy(&r, p, sizeof r);
    *lin = r.lin;
    return sizeof r + (size_t)r.rows * c->gK[w->lin[r.lin].hkey] * sizeof(float);
}

/* the owner replays the received records (source-rank order, then capture order) into the capture */
static qd_status replay(qd__ep_box *b, const char *recv, size_t total) {
    qd_qctx *c = b->c;
    size_t most = 0;
    for (size_t at = 0; at < total;) { /* what arrived is whole records of this stage's experts */
        ep_rec r = {.lin = -1};
        if (total - at >= sizeof r) memcpy(&r, recv + at, sizeof r);
        if (r.lin < 0 || r.lin >= b->w->nlin || b->w->lin[r.lin].expert < 0)
            return qd_fail(QD_ERR_INTERNAL, "expert parallel: block %d: a received record at byte %zu of %zu names no "
                           "expert Linear", b->w->index, at, total);
        int l;
        size_t n = rec_bytes(c, b->w, recv + at, &l);
        if (n > total - at)
            return qd_fail(QD_ERR_INTERNAL, "expert parallel: block %d: a received record of %zu bytes overruns the "
                           "%zu received", b->w->index, n, total);
        most = n > most ? n : most;
        at += n;
    }
    qd_buf_t x = NULL;
    if (most) QD_CHECK(qd_buf_alloc(c->be, most / sizeof(float), &x));
    qd_status st = QD_OK;
    for (size_t at = 0; at < total && st == QD_OK;) {
        int l;
        size_t n = rec_bytes(c, b->w, recv + at, &l);
        ep_rec r;
        memcpy(&r, recv + at, sizeof r);
        size_t K = c->gK[b->w->lin[l].hkey];
        qd_phase prev = qd_phase_set(c->be, QD_PH_TRANSFER);
        st = qd_be_upload(c->be, &(struct qd_upload_args){.dst = QD_REF(x, 0), .src = recv + at + sizeof r,
                                                          .src_dtype = QD_DT_F32, .n = (size_t)r.rows * K});
        qd_phase_set(c->be, prev);
        if (st == QD_OK) st = b->hess(b->h, l, QD_REF(x, 0), (size_t)r.rows);
        at += n;
    }
    qd_buf_free(x);
    return st;
}

qd_status qd__ep_deliver(qd__ep_box *b, int g, int gate_up) {
    qd_qctx *c = b->c;
    const qd_block_w *w = b->w;
    const qd_collective *cl = c->coll;
    int P = cl->size, me = cl->rank;
    for (int l = 0; l < w->nlin; l++) { /* this stage's expert keys: solved here whole (1) or elsewhere (2) */
        const qd_linear *lin = &w->lin[l];
        if (lin->expert < 0 || lin->stage != g || lin->hkey >= c->nh) continue;
        int mine = c->expert_owner[lin->expert] == me;
        c->key_local[lin->hkey] = mine ? 1 : 2;
        if (mine && !dropped(c, lin, gate_up)) QD_CHECK(qd__ensure_H(c, lin->hkey));
    }
    size_t *sc = calloc((size_t)P, sizeof *sc), *all = calloc((size_t)P * P, sizeof *all),
           *cnt = calloc((size_t)P, sizeof *cnt), *rc = calloc((size_t)P, sizeof *rc);
    char *send = NULL, *recv = NULL;
    qd_status st = sc && all && cnt && rc ? QD_OK : qd_fail(QD_ERR_NOMEM, "expert parallel: out of memory");
    size_t stot = 0, rtot = 0;
    for (size_t at = 0; st == QD_OK && at < b->len;) {
        int l;
        size_t n = rec_bytes(c, w, b->buf + at, &l);
        if (!dropped(c, &w->lin[l], gate_up)) sc[c->expert_owner[w->lin[l].expert]] += n, stot += n;
        at += n;
    }
    if (st == QD_OK && !(send = malloc(stot + 1)))
        st = qd_fail(QD_ERR_NOMEM, "expert parallel: out of memory packing %zu bytes of expert rows", stot);
    size_t o = 0;
    for (int d = 0; st == QD_OK && d < P; d++) /* grouped by owner, capture order kept */
        for (size_t at = 0; at < b->len;) {
            int l;
            size_t n = rec_bytes(c, w, b->buf + at, &l);
            if (!dropped(c, &w->lin[l], gate_up) && c->expert_owner[w->lin[l].expert] == d)
                memcpy(send + o, b->buf + at, n), o += n;
            at += n;
        }
    free(b->buf); /* the rows now wait in send */
    b->buf = NULL, b->len = b->cap = 0;
    qd_phase prev = qd_phase_set(c->be, QD_PH_REDUCE);
    for (int r = 0; st == QD_OK && r < P; r++) cnt[r] = (size_t)P * sizeof *sc;
    if (st == QD_OK) st = cl->allgatherv(cl, sc, cnt, all);
    for (int s = 0; st == QD_OK && s < P; s++) rc[s] = all[(size_t)s * P + me], rtot += rc[s];
    if (st == QD_OK && !(recv = malloc(rtot + 1)))
        st = qd_fail(QD_ERR_NOMEM, "expert parallel: out of memory receiving %zu bytes of expert rows", rtot);
    if (st == QD_OK) st = cl->alltoallv(cl, send, sc, recv, rc);
    qd_phase_set(c->be, prev);
    free(send);
    if (st == QD_OK) st = replay(b, recv, rtot);
    free(sc), free(all), free(cnt), free(rc), free(recv);
    return st;
}

/* an expert Linear of stage g that its owner solved (and shares) */
static int shared_here(const qd_qctx *c, const qd_block_w *w, int l, int g, const qd_qspec *specs) {
    const qd_linear *lin = &w->lin[l];
    return lin->expert >= 0 && lin->stage == g && !specs[l].skip && lin->hkey < c->nh && c->key_local[lin->hkey];
}

/* one solved Linear as bytes: its table index, qd_qlinear (pointers cleared), qd_qstats, then codes
 * [N][K], scales and zeros [G][N], g_idx [K] */
static size_t res_bytes(const qd_qlinear *q) {
    size_t N = (size_t)q->N, K = (size_t)q->K, G = (size_t)q->G;
    return sizeof(int64_t) + sizeof(qd_qlinear) + sizeof(qd_qstats) + N * K + G * N * 8 + K * 4;
}

static void res_pack(int l, const qd_qresult *r, char *p) {
    const qd_qlinear *q = &r->q;
    size_t N = (size_t)q->N, K = (size_t)q->K, G = (size_t)q->G;
    int64_t li = l;
    qd_qlinear h = *q;
    h.codes = NULL, h.scales = NULL, h.zeros = NULL, h.g_idx = NULL;
    memcpy(p, &li, sizeof li), p += sizeof li;
    memcpy(p, &h, sizeof h), p += sizeof h;
    memcpy(p, &r->s, sizeof r->s), p += sizeof r->s;
    memcpy(p, q->codes, N * K), p += N * K;
    memcpy(p, q->scales, G * N * 4), p += G * N * 4;
    memcpy(p, q->zeros, G * N * 4), p += G * N * 4;
    memcpy(p, q->g_idx, K * 4);
}

/* the Linear at p into results[*l] (any earlier result there freed); returns its size */
static qd_status res_unpack(const char *p, int nlin, qd_qresult *results, int *l, size_t *bytes) {
    int64_t li;
    qd_qresult r = {0};
    memcpy(&li, p, sizeof li), p += sizeof li;
    memcpy(&r.q, p, sizeof r.q), p += sizeof r.q;
    memcpy(&r.s, p, sizeof r.s), p += sizeof r.s;
    if (li < 0 || li >= nlin) return qd_fail(QD_ERR_INTERNAL, "expert parallel: a shared result names Linear %lld",
                                             (long long)li);
    *l = (int)li, *bytes = res_bytes(&r.q);
    size_t N = (size_t)r.q.N, K = (size_t)r.q.K, G = (size_t)r.q.G;
    QD_CHECK(qd_qlinear_alloc(&r.q, r.q.N, r.q.K, r.q.G));
    memcpy(r.q.codes, p, N * K), p += N * K;
    memcpy(r.q.scales, p, G * N * 4), p += G * N * 4;
    memcpy(r.q.zeros, p, G * N * 4), p += G * N * 4;
    memcpy(r.q.g_idx, p, K * 4);
    qd_qresult_free(&results[*l]);
    results[*l] = r;
    return QD_OK;
}

qd_status qd__ep_share(qd_qctx *c, qd_block_w *w, int g, const qd_qspec *specs, qd_qresult *results) {
    const qd_collective *cl = c->coll;
    int P = cl->size, me = cl->rank;
    size_t mine_len = 0, total = 0;
    for (int l = 0; l < w->nlin; l++)
        if (shared_here(c, w, l, g, specs) && c->key_local[w->lin[l].hkey] == 1 && results[l].q.codes)
            mine_len += res_bytes(&results[l].q);
    size_t *counts = calloc((size_t)P, sizeof *counts), *ones = calloc((size_t)P, sizeof *ones);
    char *mine = malloc(mine_len + 1), *all = NULL;
    qd_status st = counts && ones && mine ? QD_OK : qd_fail(QD_ERR_NOMEM, "expert parallel: out of memory sharing "
                                                                          "%zu bytes of results", mine_len);
    for (size_t at = 0, l = 0; st == QD_OK && l < (size_t)w->nlin; l++)
        if (shared_here(c, w, (int)l, g, specs) && c->key_local[w->lin[l].hkey] == 1 && results[l].q.codes)
            res_pack((int)l, &results[l], mine + at), at += res_bytes(&results[l].q);
    qd_phase prev = qd_phase_set(c->be, QD_PH_REDUCE);
    for (int r = 0; r < P && st == QD_OK; r++) ones[r] = sizeof *counts;
    if (st == QD_OK) st = cl->allgatherv(cl, &mine_len, ones, counts);
    for (int r = 0; r < P && st == QD_OK; r++) total += counts[r];
    if (st == QD_OK && !(all = malloc(total + 1)))
        st = qd_fail(QD_ERR_NOMEM, "expert parallel: out of memory gathering %zu bytes of results", total);
    if (st == QD_OK) st = cl->allgatherv(cl, mine, counts, all);
    qd_phase_set(c->be, prev);
    size_t at = 0;
    for (int r = 0; r < P && st == QD_OK; r++) { /* every other owner's Linears, installed here */
        size_t end = at + counts[r];
        while (st == QD_OK && at < end) {
            int l;
            size_t n = 0;
            if (r == me) {
                at = end;
                break;
            }
            st = res_unpack(all + at, w->nlin, results, &l, &n);
            if (st == QD_OK) st = qd__install(c, w, l, &results[l]);
            if (st == QD_OK) /* the owner's rank does not log for the job (qd_log_set_replica): rank 0 does */
                qd_info("model.layers.%d.%s: gptq w%d g%d loss %.6g damp %.4g, solved by rank %d%s%s", w->index,
                        w->lin[l].module, results[l].q.bits, results[l].q.group_size, results[l].s.loss,
                        results[l].s.damp, r, results[l].s.fallback[0] ? " - " : "", results[l].s.fallback);
            at += n;
        }
    }
    for (int l = 0; l < w->nlin; l++) /* the stage's keys go back to the data-parallel rules */
        if (w->lin[l].expert >= 0 && w->lin[l].stage == g && w->lin[l].hkey < c->nh) c->key_local[w->lin[l].hkey] = 0;
    free(counts), free(ones), free(mine), free(all);
    return st;
}
