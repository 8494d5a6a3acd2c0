/* SPDX-License-Identifier: MIT
 * awq.c - AWQ for one block (docs/reference/algorithms.md section 2, AutoAWQ's order): record every Linear's input
 * during one full-precision forward (whose output is the next block's input: the FP chain), search
 * each mapping's duo-scaled grid against the unmodified block, apply all scales (previous op /= s,
 * scaled Linears' columns *= s, cached inputs /= s), clip-search every Linear but q/k, quantize. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-phase.h"
#include "awq-internal.h"

#define AWQ_GRID 20
#define AWQ_CLIP_TOKENS 512

typedef enum { INSPECT_ATTN, INSPECT_O, INSPECT_MLP, INSPECT_DOWN } inspect_kind;

typedef struct {
    int group;          /* the cache holding the scaled Linears' input */
    qd_lin scaled[3];
    int nscaled;
    int prev_norm;      /* 1: input_layernorm (group 0) / post_attention_layernorm (group 2) */
    qd_lin prev_lin;    /* else: the previous Linear (v for o, up for down) */
    inspect_kind inspect;
} mapping;

static const mapping mappings[4] = {
    {0, {QD_LIN_Q, QD_LIN_K, QD_LIN_V}, 3, 1, QD_NLIN, INSPECT_ATTN},
    {1, {QD_LIN_O}, 1, 0, QD_LIN_V, INSPECT_O},
    {2, {QD_LIN_GATE, QD_LIN_UP}, 2, 1, QD_NLIN, INSPECT_MLP},
    {3, {QD_LIN_DOWN}, 1, 0, QD_LIN_UP, INSPECT_DOWN},
};

typedef struct {
    qd_qctx *c;
    int block;
    size_t cursor[4]; /* rows recorded so far per group */
} cache_cap;

/* a dense block's true-sequential group of Linear l: [q,k,v]=0 [o]=1 [gate,up]=2 [down]=3 */
static int dense_group(int l) { return l < QD_LIN_O ? 0 : l == QD_LIN_O ? 1 : l < QD_LIN_DOWN ? 2 : 3; }

static qd_status cache_cb(void *user, int l, qd_ref x, size_t rows) {
    cache_cap *cc = user;
    qd_qctx *c = cc->c;
    int g = dense_group(l);
    size_t K = c->gK[g];
    char name[128];
    snprintf(name, sizeof name, "model.layers.%d.%s", cc->block, qd_lin_name(l));
    QD_CHECK(qd_check_finite(c->be, x.buf, x.off, rows * K, "its input activations", name));
    QD_CHECK(qd_be_copy(c->be, &(struct qd_copy_args){.dst = QD_REF(c->cache[g], cc->cursor[g] * K), .src = x,
                                                      .rows = 1, .cols = rows * K, .ldd = rows * K, .lds = rows * K}));
    cc->cursor[g] += rows;
    return QD_OK;
}

/* the loss module's output for every calibration row into out [rows, hidden] */
static qd_status inspect(qd_qctx *c, const qd_block_w *w, inspect_kind kind, qd_buf_t out) {
    size_t S = c->o.seq_len, H = (size_t)c->cfg->hidden, rows = c->o.nseq * S;
    if (kind == INSPECT_O) return qd_linear_forward(c->be, w, QD_LIN_O, QD_REF(c->cache[1], 0), QD_REF(out, 0), rows);
    if (kind == INSPECT_DOWN)
        return qd_linear_forward(c->be, w, QD_LIN_DOWN, QD_REF(c->cache[3], 0), QD_REF(out, 0), rows);
    int g = kind == INSPECT_ATTN ? 0 : 2, stopped;
    for (size_t s0 = 0; s0 < c->o.nseq; s0 += c->chunk_seqs) {
        size_t ns = c->o.nseq - s0 < c->chunk_seqs ? c->o.nseq - s0 : c->chunk_seqs;
        qd_ref n = QD_REF(c->cache[g], s0 * S * c->gK[g]), o = QD_REF(out, s0 * S * H);
        if (kind == INSPECT_ATTN)
            QD_CHECK(qd_attn_forward(c->fwd, w, n, o, ns, NULL, NULL, -1, &stopped));
        else
            QD_CHECK(qd_mlp_forward(c->fwd, w, n, o, ns * S, NULL, NULL, -1, &stopped));
    }
    return QD_OK;
}

static qd_status copy_n(qd_backend_t be, qd_buf_t dst, qd_buf_t src, size_t n) {
    return qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(dst, 0), .src = QD_REF(src, 0), .rows = 1, .cols = n,
                                                 .ldd = n, .lds = n});
}

/* s for ratio r (AutoAWQ duo scaling, fp32) */
static void scales_for(const float *xm, const float *wm, size_t K, float r, float *s) {
    float mx = -INFINITY, mn = INFINITY;
    for (size_t k = 0; k < K; k++) {
        float v = powf(xm[k], r) / (powf(wm[k], 1.0f - r) + 1e-4f);
        v = v < 1e-4f ? 1e-4f : v;
        s[k] = v;
        mx = fmaxf(mx, v), mn = fminf(mn, v);
    }
    float norm = sqrtf(mx * mn);
    for (size_t k = 0; k < K; k++) {
        s[k] /= norm;
        if (!isfinite(s[k])) s[k] = 1.0f;
    }
}

/* the mean |x| of each input column of group g over every rank's rows, summed per slab (chunk) and
 * folded by qd__dp_sum, so the result does not depend on the rank count (fp64 rounding aside in fast
 * numerics) */
static qd_status input_means(qd_qctx *c, int g, qd_buf_t bx, float *xm) {
    size_t K = c->gK[g], S = c->o.seq_len, nsl = qd__dp_local_slabs(c);
    double *part = malloc((nsl * K + 1) * sizeof *part), *sum = malloc(K * sizeof *sum);
    qd_status st = part && sum ? QD_OK : qd_fail(QD_ERR_NOMEM, "awq: out of memory (K = %zu)", K);
    for (size_t i = 0; i < nsl && st == QD_OK; i++) {
        size_t s0 = i * c->chunk_seqs, n = (c->o.nseq - s0 < c->chunk_seqs ? c->o.nseq - s0 : c->chunk_seqs) * S;
        st = qd_be_colstat(c->be, &(struct qd_colstat_args){.kind = QD_COLSTAT_ABS_SUM, .out = QD_REF(bx, 0),
                                                            .src = QD_REF(c->cache[g], s0 * S * K), .rows = n,
                                                            .cols = K, .ld = K});
        if (st == QD_OK) st = qd_be_download(c->be, &(struct qd_download_args){.src = QD_REF(bx, 0), .dst = xm, .n = K});
        for (size_t k = 0; st == QD_OK && k < K; k++) part[i * K + k] = xm[k];
    }
    if (st == QD_OK) st = qd__dp_sum(c, part, nsl, K, sum);
    for (size_t k = 0; st == QD_OK && k < K; k++) xm[k] = (float)sum[k];
    for (size_t k = 0; st == QD_OK && k < K; k++) xm[k] /= (float)(c->nseq_total * S);
    free(part), free(sum);
    return st;
}

/* this rank's squared error of the loss module's output against the full-precision one, per slab
 * (sq[slab * AWQ_GRID]) */
static qd_status trial_sqdiff(qd_qctx *c, double *sq) {
    size_t S = c->o.seq_len, H = (size_t)c->cfg->hidden;
    for (size_t i = 0, s0 = 0; s0 < c->o.nseq; i++, s0 += c->chunk_seqs) {
        size_t n = (c->o.nseq - s0 < c->chunk_seqs ? c->o.nseq - s0 : c->chunk_seqs) * S * H;
        QD_CHECK(qd_be_reduce(c->be, &(struct qd_reduce_args){.kind = QD_RED_SQDIFF, .a = QD_REF(c->fp_out, s0 * S * H),
                                                              .b = QD_REF(c->trial_out, s0 * S * H), .n = n,
                                                              .out = &sq[i * AWQ_GRID]}));
    }
    return QD_OK;
}

/* grid search of one mapping against the current (unmodified) block; best scales into best[K] */
static qd_status search(qd_qctx *c, qd_block_w *w, const mapping *m, const qd_qspec *specs, float *best,
                        int *best_k) {
    qd_backend_t be = c->be;
    size_t rows = c->nseq_total * c->o.seq_len, H = (size_t)c->cfg->hidden, K = c->gK[m->group];
    size_t nsl = qd__dp_local_slabs(c);
    float *xm = malloc(K * sizeof *xm), *wm = malloc(K * sizeof *wm), *s = malloc(K * sizeof *s);
    double *sq = calloc(nsl * AWQ_GRID + 1, sizeof *sq), sqsum[AWQ_GRID];
    qd_buf_t bx = NULL, bw = NULL, bs = NULL, orig[3] = {NULL, NULL, NULL};
    qd_status st = QD_OK;
    if (!xm || !wm || !s || !sq) {
        st = qd_fail(QD_ERR_NOMEM, "awq: out of memory (K = %zu)", K);
        goto done;
    }
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &bx), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &bw), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &bs), st, done);
    QD_CHECK_GOTO(input_means(c, m->group, bx, xm), st, done);
    size_t wrows = 0;
    for (int i = 0; i < m->nscaled; i++) {
        qd_lin l = m->scaled[i];
        size_t gs = specs[l].group_size > 0 ? (size_t)specs[l].group_size : K;
        QD_CHECK_GOTO(qd_be_colstat(be, &(struct qd_colstat_args){.kind = QD_COLSTAT_GROUP_NORM_SUM,
                                                                  .out = QD_REF(bw, 0), .src = QD_REF(w->w[l], 0),
                                                                  .rows = w->n_out[l], .cols = K, .ld = K,
                                                                  .group_size = gs, .accumulate = i > 0}), st, done);
        wrows += w->n_out[l];
        QD_CHECK_GOTO(qd_buf_alloc(be, w->n_out[l] * K, &orig[i]), st, done);
        QD_CHECK_GOTO(copy_n(be, orig[i], w->w[l], w->n_out[l] * K), st, done);
    }
    QD_CHECK_GOTO(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(bw, 0), .dst = wm, .n = K}), st, done);
    for (size_t k = 0; k < K; k++) wm[k] /= (float)wrows;
    QD_CHECK_GOTO(inspect(c, w, m->inspect, c->fp_out), st, done);
    double best_loss = INFINITY;
    *best_k = -1;
    for (int k = 0; k < AWQ_GRID; k++) {
        scales_for(xm, wm, K, (float)k / AWQ_GRID, s);
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bs, 0), .src = s, .src_dtype = QD_DT_F32,
                                                                .n = K}), st, done);
        for (int i = 0; i < m->nscaled; i++) { /* W <- Q(W s) / s */
            qd_lin l = m->scaled[i];
            size_t N = w->n_out[l];
            size_t gs = specs[l].group_size > 0 ? (size_t)specs[l].group_size : K;
            qd_ref W = QD_REF(w->w[l], 0);
            QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_MUL_COLV, .out = W,
                                                                  .x = QD_REF(orig[i], 0), .v = QD_REF(bs, 0),
                                                                  .rows = N, .cols = K, .ld = K}), st, done);
            QD_CHECK_GOTO(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = qd_qspec_qcfg(&specs[l]), .W = W, .Q = W,
                                                                        .N = N, .K = K, .ldw = K, .group_size = gs}),
                          st, done);
            QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_DIV_COLV, .out = W, .x = W,
                                                                  .v = QD_REF(bs, 0), .rows = N, .cols = K, .ld = K}),
                          st, done);
        }
        QD_CHECK_GOTO(inspect(c, w, m->inspect, c->trial_out), st, done);
        QD_CHECK_GOTO(trial_sqdiff(c, &sq[k]), st, done);
    }
    /* the candidates' errors summed over the ranks (qd__dp_sum), then the first smallest loss */
    QD_CHECK_GOTO(qd__dp_sum(c, sq, nsl, AWQ_GRID, sqsum), st, done);
    for (int k = 0; k < AWQ_GRID; k++) {
        double loss = sqsum[k] / (double)(rows * H);
        if (loss < best_loss) best_loss = loss, *best_k = k;
    }
    if (*best_k >= 0) scales_for(xm, wm, K, (float)*best_k / AWQ_GRID, best);
    if (*best_k < 0) {
        st = qd_fail(QD_ERR_NUMERIC, "model.layers.%d.%s: AWQ scale search found no finite loss", w->index,
                     qd_lin_name(m->scaled[0]));
        goto done;
    }
    for (int i = 0; i < m->nscaled; i++) /* back to the unmodified block */
        QD_CHECK_GOTO(copy_n(be, w->w[m->scaled[i]], orig[i], w->n_out[m->scaled[i]] * K), st, done);
done:
    free(xm), free(wm), free(s), free(sq);
    qd_buf_free(bx), qd_buf_free(bw), qd_buf_free(bs);
    for (int i = 0; i < 3; i++) qd_buf_free(orig[i]);
    return st;
}

static qd_status apply(qd_qctx *c, qd_block_w *w, const mapping *m, const float *s) {
    qd_backend_t be = c->be;
    size_t K = c->gK[m->group], rows = c->o.nseq * c->o.seq_len;
    qd_buf_t bs;
    QD_CHECK(qd_buf_alloc(be, K, &bs));
    qd_status st;
    QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bs, 0), .src = s, .src_dtype = QD_DT_F32,
                                                            .n = K}), st, done);
    if (m->prev_norm) {
        qd_buf_t nw = m->group == 0 ? w->ln_in : w->ln_post;
        QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_DIV_COLV, .out = QD_REF(nw, 0),
                                                              .x = QD_REF(nw, 0), .v = QD_REF(bs, 0), .rows = 1,
                                                              .cols = K, .ld = K}), st, done);
    } else {
        qd_lin p = m->prev_lin;
        QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_DIV_ROWV, .out = QD_REF(w->w[p], 0),
                                                              .x = QD_REF(w->w[p], 0), .v = QD_REF(bs, 0),
                                                              .rows = w->n_out[p], .cols = w->n_in[p],
                                                              .ld = w->n_in[p]}), st, done);
        if (w->b[p])
            QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_DIV_COLV, .out = QD_REF(w->b[p], 0),
                                                                  .x = QD_REF(w->b[p], 0), .v = QD_REF(bs, 0),
                                                                  .rows = 1, .cols = K, .ld = K}), st, done);
    }
    for (int i = 0; i < m->nscaled; i++) {
        qd_lin l = m->scaled[i];
        QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_MUL_COLV, .out = QD_REF(w->w[l], 0),
                                                              .x = QD_REF(w->w[l], 0), .v = QD_REF(bs, 0),
                                                              .rows = w->n_out[l], .cols = K, .ld = K}), st, done);
    }
    QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_DIV_COLV, .out = QD_REF(c->cache[m->group], 0),
                                                          .x = QD_REF(c->cache[m->group], 0), .v = QD_REF(bs, 0),
                                                          .rows = rows, .cols = K, .ld = K}), st, done);
done:
    qd_buf_free(bs);
    return st;
}

static qd_status clip(qd_qctx *c, qd_block_w *w, int l, const qd_qspec *spec) {
    qd_backend_t be = c->be;
    int g = dense_group(l);
    size_t rows = c->nseq_total * c->o.seq_len, K = c->gK[g];
    size_t step = rows / AWQ_CLIP_TOKENS ? rows / AWQ_CLIP_TOKENS : 1, T = (rows + step - 1) / step;
    qd_buf_t X;
    QD_CHECK(qd_buf_alloc(be, T * K, &X));
    qd_status st;
    /* every step-th token, as AutoAWQ's input_feat[:, ::step]; data-parallel: from every rank */
    if (c->coll) QD_CHECK_GOTO(qd__dp_clip_tokens(c, g, step, T, X), st, done);
    else QD_CHECK_GOTO(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(X, 0), .src = QD_REF(c->cache[g], 0), .rows = T,
                                                        .cols = K, .ldd = K, .lds = step * K}), st, done);
    QD_CHECK_GOTO(qd_be_awq_clip(be, &(struct qd_awq_clip_args){.cfg = qd_qspec_qcfg(spec), .W = QD_REF(w->w[l], 0),
                                                                .X = QD_REF(X, 0), .N = w->n_out[l], .K = K, .T = T,
                                                                .group_size = spec->group_size > 0
                                                                                  ? (size_t)spec->group_size : K,
                                                                .grid = 20, .max_shrink = 0.5f}), st, done);
done:
    qd_buf_free(X);
    return st;
}

qd_status qd__awq_block(qd_qctx *c, qd_block_w *w, qd_buf_t inputs, qd_buf_t outputs, qd_qresult *results) {
    qd_backend_t be = c->be;
    size_t rows = c->o.nseq * c->o.seq_len, H = (size_t)c->cfg->hidden;
    qd_qspec specs[QD_NLIN];
    char names[QD_NLIN][128];
    if (w->nlin != QD_NLIN) return qd_fail(QD_ERR_INTERNAL, "block %d: AWQ of a block that is not dense", w->index);
    for (int l = 0; l < QD_NLIN; l++) qd_qctx_spec(c, w->index, &w->lin[l], &specs[l], names[l], sizeof names[l]);
    for (int g = 0; g < 4; g++)
        if (!c->cache[g]) QD_CHECK(qd_buf_alloc(be, rows * c->gK[g], &c->cache[g]));
    if (!c->fp_out) QD_CHECK(qd_buf_alloc(be, rows * H, &c->fp_out));
    if (!c->trial_out) QD_CHECK(qd_buf_alloc(be, rows * H, &c->trial_out));
    /* one full-precision forward: every Linear's input, and the next block's input */
    cache_cap cc = {.c = c, .block = w->index};
    QD_CHECK(qd__forward_all(c, w, inputs, outputs, cache_cb, &cc, -1));
    qd_phase prev = qd_phase_set(be, QD_PH_AWQ); /* search (with its own partial forwards), scaling, clip, RTN */
    float *best[4] = {NULL, NULL, NULL, NULL};
    int active[4] = {0, 0, 0, 0};
    qd_status st = QD_OK;
    for (int i = 0; i < 4; i++) {
        const mapping *m = &mappings[i];
        int ok = 1;
        for (int j = 0; j < m->nscaled; j++) ok &= !specs[m->scaled[j]].skip;
        if (i == 1 && w->n_out[QD_LIN_V] != w->n_in[QD_LIN_O]) ok = 0; /* GQA: v -> o cannot be scaled */
        if (!ok) continue;
        best[i] = malloc(c->gK[m->group] * sizeof *best[i]);
        if (!best[i]) {
            st = qd_fail(QD_ERR_NOMEM, "awq: out of memory");
            goto done;
        }
        int k = -1;
        QD_CHECK_GOTO(search(c, w, m, specs, best[i], &k), st, done);
        active[i] = 1;
        qd_info("model.layers.%d.%s: awq scales ratio %.2f", w->index, qd_lin_name(m->scaled[0]), (double)k / AWQ_GRID);
    }
    for (int i = 0; i < 4; i++)
        if (active[i]) QD_CHECK_GOTO(apply(c, w, &mappings[i], best[i]), st, done);
    for (int l = 0; l < QD_NLIN; l++) {
        if (specs[l].skip) continue;
        if (l != QD_LIN_Q && l != QD_LIN_K) QD_CHECK_GOTO(clip(c, w, l, &specs[l]), st, done);
        QD_CHECK_GOTO(qd_rtn_layer(be, names[l], &specs[l], w->w[l], w->n_out[l], w->n_in[l], &results[l]), st, done);
        results[l].s.calib_tokens = c->nseq_total * c->o.seq_len;
        QD_CHECK_GOTO(qd__install(c, w, l, &results[l]), st, done);
        qd_info("%s: awq w%d g%d loss %.6g %.2fs", names[l], specs[l].bits, specs[l].group_size, results[l].s.loss,
                results[l].s.seconds);
    }
done:
    for (int i = 0; i < 4; i++) free(best[i]);
    qd_phase_set(be, prev);
    return st;
}
