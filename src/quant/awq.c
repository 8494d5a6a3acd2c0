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
#include "qd-param.h"
#include "qd-phase.h"
#include "awq-internal.h"

#define AWQ_GRID 20
#define AWQ_CLIP_TOKENS 512

/* the loss module's output for every calibration row of m's key into out ([rows, width], width:
 * loss_width) */
static qd_status inspect(qd_qctx *c, const qd_block_w *w, const qd__awq_map *m, qd_buf_t out) {
    size_t S = c->o.seq_len, H = (size_t)c->cfg->hidden;
    const qd__awq_in *a = qd__awq_in_of(c, m->key);
    if (m->loss == QD__AWQ_LIN)
        return a->rows ? qd_linear_forward(c->be, w, m->loss_lin, QD_REF(a->buf, 0), QD_REF(out, 0), a->rows) : QD_OK;
    int stopped;
    for (size_t s0 = 0; s0 < c->o.nseq; s0 += c->chunk_seqs) {
        size_t ns = c->o.nseq - s0 < c->chunk_seqs ? c->o.nseq - s0 : c->chunk_seqs;
        qd_ref n = QD_REF(a->buf, s0 * S * a->K), o = QD_REF(out, s0 * S * H);
        if (m->loss == QD__AWQ_ATTN)
            QD_CHECK(qd_attn_forward(c->fwd, w, n, o, ns, NULL, NULL, -1, &stopped));
        else if (qd_block_is_moe(w))
            QD_CHECK(qd_moe_forward(c->fwd, w, n, o, ns * S, NULL, NULL, -1, NULL, &stopped));
        else
            QD_CHECK(qd_mlp_forward(c->fwd, w, n, o, ns * S, NULL, NULL, -1, &stopped));
    }
    return QD_OK;
}

static size_t loss_width(const qd_qctx *c, const qd_block_w *w, const qd__awq_map *m) {
    return m->loss == QD__AWQ_LIN ? w->n_out[m->loss_lin] : (size_t)c->cfg->hidden;
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

/* the mean |x| of each input column of a over every rank's rows, summed per slab (chunk) and folded
 * by qd__dp_sum, so the result does not depend on the rank count (fp64 rounding aside in fast numerics) */
static qd_status input_means(qd_qctx *c, const qd__awq_in *a, qd_buf_t bx, float *xm) {
    size_t K = a->K, nsl = qd__dp_local_slabs(c);
    double *part = calloc(nsl * K + 1, sizeof *part), *sum = malloc(K * sizeof *sum);
    qd_status st = part && sum ? QD_OK : qd_fail(QD_ERR_NOMEM, "awq: out of memory (K = %zu)", K);
    for (size_t i = 0; i < nsl && st == QD_OK; i++) {
        size_t n = a->off[i + 1] - a->off[i];
        if (!n) continue; /* a routed expert without tokens in this chunk: zero */
        st = qd_be_colstat(c->be, &(struct qd_colstat_args){.kind = QD_COLSTAT_ABS_SUM, .out = QD_REF(bx, 0),
                                                            .src = QD_REF(a->buf, a->off[i] * K), .rows = n,
                                                            .cols = K, .ld = K});
        if (st == QD_OK) st = qd_be_download(c->be, &(struct qd_download_args){.src = QD_REF(bx, 0), .dst = xm, .n = K});
        for (size_t k = 0; st == QD_OK && k < K; k++) part[i * K + k] = xm[k];
    }
    if (st == QD_OK) st = qd__dp_sum(c, part, nsl, K, sum);
    for (size_t k = 0; st == QD_OK && k < K; k++) xm[k] = (float)sum[k];
    for (size_t k = 0; st == QD_OK && k < K; k++) xm[k] /= (float)a->total;
    free(part), free(sum);
    return st;
}

/* this rank's squared error of the loss module's output against the full-precision one, per slab
 * (sq[slab * AWQ_GRID]) */
static qd_status trial_sqdiff(qd_qctx *c, const qd__awq_in *a, size_t width, double *sq) {
    for (size_t i = 0; i < qd__dp_local_slabs(c); i++) {
        size_t r0 = a->off[i], n = (a->off[i + 1] - r0) * width;
        sq[i * AWQ_GRID] = 0;
        if (n)
            QD_CHECK(qd_be_reduce(c->be, &(struct qd_reduce_args){.kind = QD_RED_SQDIFF, .a = QD_REF(c->fp_out, r0 * width),
                                                                  .b = QD_REF(c->trial_out, r0 * width), .n = n,
                                                                  .out = &sq[i * AWQ_GRID]}));
    }
    return QD_OK;
}

/* grid search of one mapping against the current (unmodified) block; best scales into best[K] */
static qd_status search(qd_qctx *c, qd_block_w *w, const qd__awq_map *m, const qd_qspec *specs, float *best,
                        int *best_k) {
    qd_backend_t be = c->be;
    const qd__awq_in *a = qd__awq_in_of(c, m->key);
    size_t K = a->K, width = loss_width(c, w, m), nsl = qd__dp_local_slabs(c);
    float *xm = malloc(K * sizeof *xm), *wm = malloc(K * sizeof *wm), *s = malloc(K * sizeof *s);
    double *sq = calloc(nsl * AWQ_GRID + 1, sizeof *sq), sqsum[AWQ_GRID];
    qd_buf_t bx = NULL, bw = NULL, bs = NULL, *orig = calloc((size_t)m->nlin + 1, sizeof *orig);
    qd_status st = QD_OK;
    if (!xm || !wm || !s || !sq || !orig) {
        st = qd_fail(QD_ERR_NOMEM, "awq: out of memory (K = %zu)", K);
        goto done;
    }
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &bx), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &bw), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &bs), st, done);
    QD_CHECK_GOTO(input_means(c, a, bx, xm), st, done);
    size_t wrows = 0;
    for (int i = 0; i < m->nlin; i++) { /* the quantized Linears: their weights' group-normalised means */
        int l = m->lin[i];
        if (specs[l].skip) continue;
        size_t gs = specs[l].group_size > 0 ? (size_t)specs[l].group_size : K;
        QD_CHECK_GOTO(qd_be_colstat(be, &(struct qd_colstat_args){.kind = QD_COLSTAT_GROUP_NORM_SUM,
                                                                  .out = QD_REF(bw, 0), .src = QD_REF(w->w[l], 0),
                                                                  .rows = w->n_out[l], .cols = K, .ld = K,
                                                                  .group_size = gs, .accumulate = wrows > 0}), st, done);
        wrows += w->n_out[l];
        QD_CHECK_GOTO(qd_buf_alloc(be, w->n_out[l] * K, &orig[i]), st, done);
        QD_CHECK_GOTO(copy_n(be, orig[i], w->w[l], w->n_out[l] * K), st, done);
    }
    QD_CHECK_GOTO(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(bw, 0), .dst = wm, .n = K}), st, done);
    for (size_t k = 0; k < K; k++) wm[k] /= (float)wrows;
    QD_CHECK_GOTO(inspect(c, w, m, c->fp_out), st, done);
    double best_loss = INFINITY;
    *best_k = -1;
    for (int k = 0; k < AWQ_GRID; k++) {
        scales_for(xm, wm, K, (float)k / AWQ_GRID, s);
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bs, 0), .src = s, .src_dtype = QD_DT_F32,
                                                                .n = K}), st, done);
        for (int i = 0; i < m->nlin; i++) { /* W <- Q(W s) / s */
            int l = m->lin[i];
            if (specs[l].skip) continue;
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
        QD_CHECK_GOTO(inspect(c, w, m, c->trial_out), st, done);
        QD_CHECK_GOTO(trial_sqdiff(c, a, width, &sq[k]), st, done);
    }
    /* the candidates' errors summed over the ranks (qd__dp_sum), then the first smallest loss */
    QD_CHECK_GOTO(qd__dp_sum(c, sq, nsl, AWQ_GRID, sqsum), st, done);
    for (int k = 0; k < AWQ_GRID; k++) {
        double loss = sqsum[k] / (double)(a->total * width);
        if (loss < best_loss) best_loss = loss, *best_k = k;
    }
    if (*best_k >= 0) scales_for(xm, wm, K, (float)*best_k / AWQ_GRID, best);
    if (*best_k < 0) {
        st = qd_fail(QD_ERR_NUMERIC, "model.layers.%d.%s: AWQ scale search found no finite loss", w->index,
                     w->lin[m->lin[0]].module);
        goto done;
    }
    for (int i = 0; i < m->nlin; i++) /* back to the unmodified block */
        if (orig[i]) QD_CHECK_GOTO(copy_n(be, w->w[m->lin[i]], orig[i], w->n_out[m->lin[i]] * K), st, done);
done:
    free(xm), free(wm), free(s), free(sq);
    qd_buf_free(bx), qd_buf_free(bw), qd_buf_free(bs);
    for (int i = 0; orig && i < m->nlin; i++) qd_buf_free(orig[i]);
    free(orig);
    return st;
}

static qd_status div_cols(qd_backend_t be, qd_buf_t x, qd_buf_t bs, size_t rows, size_t K) {
    return qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_DIV_COLV, .out = QD_REF(x, 0), .x = QD_REF(x, 0),
                                                   .v = QD_REF(bs, 0), .rows = rows, .cols = K, .ld = K});
}

/* previous op /= s, every Linear of the mapping (the folded ones too) *= s, and every kept input of
 * theirs /= s (an expert's gate/up input is its own gathered rows, or the router's: each once) */
static qd_status apply(qd_qctx *c, qd_block_w *w, const qd__awq_map *m, const float *s) {
    qd_backend_t be = c->be;
    size_t K = qd__awq_in_of(c, m->key)->K;
    qd__awq_in **done_in = calloc((size_t)m->nlin + 1, sizeof *done_in);
    int ndone = 0;
    qd_buf_t bs = NULL;
    qd_status st = done_in ? qd_buf_alloc(be, K, &bs) : qd_fail(QD_ERR_NOMEM, "awq: out of memory");
    if (st != QD_OK) goto done;
    QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bs, 0), .src = s, .src_dtype = QD_DT_F32,
                                                            .n = K}), st, done);
    if (m->norm) {
        QD_CHECK_GOTO(div_cols(be, m->norm, bs, 1, K), st, done);
    } else {
        int p = m->prev;
        QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_DIV_ROWV, .out = QD_REF(w->w[p], 0),
                                                              .x = QD_REF(w->w[p], 0), .v = QD_REF(bs, 0),
                                                              .rows = w->n_out[p], .cols = w->n_in[p],
                                                              .ld = w->n_in[p]}), st, done);
        if (w->b[p]) QD_CHECK_GOTO(div_cols(be, w->b[p], bs, 1, K), st, done);
    }
    for (int i = 0; i < m->nlin; i++) {
        int l = m->lin[i];
        QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_MUL_COLV, .out = QD_REF(w->w[l], 0),
                                                              .x = QD_REF(w->w[l], 0), .v = QD_REF(bs, 0),
                                                              .rows = w->n_out[l], .cols = K, .ld = K}), st, done);
    }
    for (int i = 0; i < m->nlin; i++) {
        qd__awq_in *a = qd__awq_in_of(c, w->lin[m->lin[i]].hkey);
        int seen = 0;
        for (int j = 0; j < ndone; j++) seen |= done_in[j] == a;
        if (seen || !a->rows) continue;
        done_in[ndone++] = a;
        QD_CHECK_GOTO(div_cols(be, a->buf, bs, a->rows, K), st, done);
    }
done:
    qd_buf_free(bs);
    free(done_in);
    return st;
}

/* AutoAWQ clips every Linear but those whose names hold q_ or k_ (q/k and MLA's q_a, q_b) */
static int clipped(qd_lin k) { return k != QD_LIN_Q && k != QD_LIN_K && k != QD_LIN_Q_A && k != QD_LIN_Q_B; }

static qd_status clip(qd_qctx *c, qd_block_w *w, int l, const qd_qspec *spec) {
    qd_backend_t be = c->be;
    const qd__awq_in *a = qd__awq_in_of(c, w->lin[l].hkey);
    size_t rows = a->total, K = a->K;
    size_t step = rows / AWQ_CLIP_TOKENS ? rows / AWQ_CLIP_TOKENS : 1, T = (rows + step - 1) / step;
    if (!T) return QD_OK;
    qd_buf_t X;
    QD_CHECK(qd_buf_alloc(be, T * K, &X));
    qd_status st;
    /* every step-th token, as AutoAWQ's input_feat[:, ::step]; data-parallel: from every rank */
    if (c->coll) QD_CHECK_GOTO(qd__dp_clip_tokens(c, a, step, T, X), st, done);
    else QD_CHECK_GOTO(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(X, 0), .src = QD_REF(a->buf, 0), .rows = T,
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

/* an expert Linear's report fields: its routed tokens, and the all-token fallback when it took one */
static void note_expert(const qd_qctx *c, const qd_block_w *w, int l, qd_qresult *r) {
    int e = w->lin[l].expert;
    if (e < 0) return;
    r->s.expert = e + 1;
    r->s.expert_tokens = c->expert_tokens[e];
    if (c->o.moe_all || !c->expert_all[e]) return;
    size_t len = strlen(r->s.fallback);
    snprintf(r->s.fallback + len, sizeof r->s.fallback - len, "%sall-token AWQ statistics: %zu routed tokens < "
             "--moe-min-tokens %zu", len ? "; " : "", c->expert_tokens[e],
             c->o.moe_min_tokens > 1 ? c->o.moe_min_tokens : 1);
    qd_info("model.layers.%d.%s: %s", w->index, w->lin[l].module, r->s.fallback);
}

static qd_status ensure_out(qd_qctx *c, qd_buf_t *b, size_t n) {
    if (*b && qd_buf_len(*b) >= n) return QD_OK;
    qd_buf_free(*b);
    *b = NULL;
    return qd_buf_alloc(c->be, n, b);
}

qd_status qd__awq_block(qd_qctx *c, qd_block_w *w, qd_buf_t inputs, qd_buf_t outputs, qd_qresult *results) {
    qd_backend_t be = c->be;
    size_t rows = c->o.nseq * c->o.seq_len, H = (size_t)c->cfg->hidden;
    qd_qspec *specs = calloc((size_t)w->nlin + 1, sizeof *specs);
    char (*names)[128] = calloc((size_t)w->nlin + 1, sizeof *names);
    qd__awq_map *maps = NULL;
    float **best = NULL;
    int nmaps = 0;
    qd_status st = specs && names ? QD_OK : qd_fail(QD_ERR_NOMEM, "block %d: out of memory", w->index);
    if (st != QD_OK) goto done;
    for (int l = 0; l < w->nlin; l++) qd_qctx_spec(c, w->index, &w->lin[l], &specs[l], names[l], sizeof names[l]);
    QD_CHECK_GOTO(ensure_out(c, &c->trial_out, rows * H), st, done);
    /* one full-precision forward: every Linear's input, and the next block's input */
    QD_CHECK_GOTO(qd__awq_capture(c, w, inputs, outputs), st, done);
    QD_CHECK_GOTO(qd__awq_maps(c, w, specs, &maps, &nmaps), st, done);
    size_t out_n = rows * H;
    for (int i = 0; i < nmaps; i++) {
        size_t n = qd__awq_in_of(c, maps[i].key)->rows * loss_width(c, w, &maps[i]);
        out_n = n > out_n ? n : out_n;
    }
    QD_CHECK_GOTO(ensure_out(c, &c->fp_out, out_n), st, done);
    QD_CHECK_GOTO(ensure_out(c, &c->trial_out, out_n), st, done);
    best = calloc((size_t)nmaps + 1, sizeof *best);
    if (!best) {
        st = qd_fail(QD_ERR_NOMEM, "awq: out of memory");
        goto done;
    }
    qd_phase prev = qd_phase_set(be, QD_PH_AWQ); /* search (with its own partial forwards), scaling, clip, RTN */
    for (int i = 0; i < nmaps && st == QD_OK; i++) {
        const qd__awq_map *m = &maps[i];
        int k = -1, first = m->lin[0];
        for (int j = 0; j < m->nlin && specs[first].skip; j++) first = m->lin[j];
        best[i] = malloc(qd__awq_in_of(c, m->key)->K * sizeof *best[i]);
        if (!best[i]) st = qd_fail(QD_ERR_NOMEM, "awq: out of memory");
        if (st == QD_OK) st = search(c, w, m, specs, best[i], &k);
        if (st == QD_OK)
            qd_info("model.layers.%d.%s: awq scales ratio %.2f", w->index, w->lin[first].module, (double)k / AWQ_GRID);
    }
    for (int i = 0; i < nmaps && st == QD_OK; i++) st = apply(c, w, &maps[i], best[i]);
    int smooth_only = qd_param_str(QD_PARAM_AWQ_SMOOTH_ONLY) != NULL; /* tests: the scaled block must compute the same */
    for (int l = 0; l < w->nlin && st == QD_OK && !smooth_only; l++) {
        if (specs[l].skip) continue;
        if (clipped(w->lin[l].kind)) QD_CHECK_GOTO(clip(c, w, l, &specs[l]), st, out);
        QD_CHECK_GOTO(qd_rtn_layer(be, names[l], &specs[l], w->w[l], w->n_out[l], w->n_in[l], &results[l]), st, out);
        results[l].s.calib_tokens = c->nseq_total * c->o.seq_len;
        note_expert(c, w, l, &results[l]);
        QD_CHECK_GOTO(qd__install(c, w, l, &results[l]), st, out);
        qd_info("%s: awq w%d g%d loss %.6g %.2fs", names[l], specs[l].bits, specs[l].group_size, results[l].s.loss,
                results[l].s.seconds);
    }
    for (int l = 0; l < w->nlin && st == QD_OK && qd_block_is_moe(w); l++) /* routers too: their rows */
        if (w->lin[l].expert >= 0 && specs[l].skip) note_expert(c, w, l, &results[l]);
out:
    qd_phase_set(be, prev);
done:
    for (int i = 0; best && i < nmaps; i++) free(best[i]);
    free(best), free(specs), free(names);
    qd__awq_maps_free(maps, nmaps);
    return st;
}
