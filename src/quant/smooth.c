/* SPDX-License-Identifier: MIT
 * smooth.c - SmoothQuant for one block (--smoothquant ALPHA|auto; docs/numerics.md "SmoothQuant"), run
 * by the block driver before GPTQ or RTN sees the block.
 *
 * Two mappings, as llm-compressor's SmoothQuantModifier and the paper's Llama code smooth: the input
 * norm -> the Linears of stage 0 (q/k/v; MLA: q_a or q_proj, kv_a), and the post-attention norm -> the
 * Linears that read the MLP input (gate/up; MoE: the router, the shared expert's gate/up/gate and every
 * expert's gate/up, so routing is unchanged). One forward of the block as it is (the input of the quantized
 * chain) gives max|X_j| of each mapping's input (qd-act-observe.h: a max, order-free, so ranks and chunks
 * do not change it); per channel j
 *     s_j = max(max|X_j|, 1e-5)^a / max(max_rows |W[:, j]| over the mapping's Linears, 1e-5)^(1-a)
 * (a channel that never fires keeps s_j = 1), then norm.weight /= s and W[:, j] *= s for every Linear
 * of the mapping. The norm and the Linears left in full precision are rounded to the model's dtype
 * here, so the chain computes what the export holds.
 * auto: per block and per mapping, a = k / 20 (k = 0..20) minimising the squared error of the mapping's
 * quantized Linears' outputs against full precision on 512 sampled tokens (every step-th row of the
 * whole calibration, gathered from every rank, so every rank picks the same a): activations int8 per
 * token (scale amax / 127), weights int8 per channel (min-max, as w8a8-int8's RTN); ties keep the
 * smaller a.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-act-observe.h"
#include "qd-check.h"
#include "qd-log.h"
#include "qd-phase.h"
#include "quantize-internal.h"

#define SQ_GRID 20
#define SQ_TOKENS 512
#define SQ_MIN 1e-5

typedef struct {
    qd_qctx *c;
    const qd_block_w *w;
    int mlp_stage;
    qd_act_obs obs[2];
    /* auto: sampled rows t * step (global row index) of each mapping's input, T of them */
    size_t step, T, row0, cursor[2];
    float *samp[2]; /* [T][K] */
} sq_cap;

/* the mapping Linear l belongs to: 0 (input norm), 1 (post-attention norm) or -1 */
static int map_of(const qd_block_w *w, int l, int mlp_stage) {
    const qd_linear *lin = &w->lin[l];
    if (lin->stage == 0) return 0;
    if (lin->stage != mlp_stage) return -1;
    switch (lin->kind) {
    case QD_LIN_GATE: case QD_LIN_UP: case QD_LIN_ROUTER: case QD_LIN_EXP_GATE: case QD_LIN_EXP_UP:
    case QD_LIN_SH_GATE: case QD_LIN_SH_UP: case QD_LIN_SH_ROUTER:
        return 1;
    default:
        return -1;
    }
}

/* the captures carrying every token of a mapping's input once per chunk: stage 0's (made once, with its
 * first Linear), the dense MLP's gate or the MoE router's */
static int primary(const qd_block_w *w, int l, int mlp_stage) {
    const qd_linear *lin = &w->lin[l];
    if (lin->stage == 0) return 0;
    if (lin->stage == mlp_stage && (lin->kind == QD_LIN_GATE || lin->kind == QD_LIN_ROUTER)) return 1;
    return -1;
}

static qd_status cap_cb(void *user, int l, qd_ref x, size_t rows) {
    sq_cap *s = user;
    int m = primary(s->w, l, s->mlp_stage);
    if (m < 0 || !rows) return QD_OK;
    qd_qctx *c = s->c;
    size_t K = s->w->n_in[l];
    char name[128];
    snprintf(name, sizeof name, "model.layers.%d.%s", s->w->index, s->w->lin[l].module);
    QD_CHECK(qd_check_finite(c->be, x.buf, x.off, rows * K, "its input activations", name));
    QD_CHECK(qd_act_obs_add(c->be, &s->obs[m], x, rows, K, K));
    if (s->samp[m]) { /* the sampled global rows that fall in this chunk */
        size_t g0 = s->row0 + s->cursor[m], g1 = g0 + rows;
        for (size_t t = (g0 + s->step - 1) / s->step; t < s->T && t * s->step < g1; t++)
            QD_CHECK(qd_be_download(c->be, &(struct qd_download_args){.src = {x.buf, x.off + (t * s->step - g0) * K},
                                                                      .dst = s->samp[m] + t * K, .n = K}));
    }
    s->cursor[m] += rows;
    return QD_OK;
}

/* every rank's sampled rows (contiguous in rank order, as the ranks' sequences are) onto every rank */
static qd_status gather_samples(qd_qctx *c, sq_cap *s, int m, size_t K) {
    const qd_collective *cl = c->coll;
    if (!cl || cl->size <= 1) return QD_OK;
    size_t S = c->o.seq_len, P = (size_t)cl->size, mine0 = 0;
    size_t *counts = calloc(P, sizeof *counts);
    float *all = malloc(s->T * K * sizeof *all + 1);
    qd_status st = counts && all ? QD_OK : qd_fail(QD_ERR_NOMEM, "smoothquant: out of memory for %zu sampled tokens", s->T);
    for (size_t r = 0; st == QD_OK && r < P; r++) {
        size_t first, count;
        qd_collective_share(c->nseq_total, c->chunk_seqs, (int)r, cl->size, &first, &count);
        size_t r0 = first * S, r1 = (first + count) * S, t0 = (r0 + s->step - 1) / s->step,
               t1 = (r1 + s->step - 1) / s->step;
        if (t1 > s->T) t1 = s->T;
        if (t0 > t1) t0 = t1;
        counts[r] = (t1 - t0) * K * sizeof(float);
        if ((int)r == cl->rank) mine0 = t0;
    }
    qd_phase prev = qd_phase_set(c->be, QD_PH_REDUCE);
    if (st == QD_OK) st = cl->allgatherv(cl, s->samp[m] + mine0 * K, counts, all);
    qd_phase_set(c->be, prev);
    if (st == QD_OK) memcpy(s->samp[m], all, s->T * K * sizeof *all);
    free(counts), free(all);
    return st;
}

/* max_rows |W[:, j]| over the Linears of mapping m into wmax [K] */
static qd_status weight_max(qd_qctx *c, const qd_block_w *w, int m, int mlp_stage, size_t K, double *wmax) {
    memset(wmax, 0, K * sizeof *wmax);
    for (int l = 0; l < w->nlin; l++) {
        if (map_of(w, l, mlp_stage) != m) continue;
        size_t N = w->n_out[l];
        float *h = malloc(N * K * sizeof *h + 1);
        if (!h) return qd_fail(QD_ERR_NOMEM, "smoothquant: out of memory for %s", w->lin[l].module);
        qd_status st = qd_be_download(c->be, &(struct qd_download_args){.src = QD_REF(w->w[l], 0), .dst = h, .n = N * K});
        for (size_t r = 0; st == QD_OK && r < N; r++)
            for (size_t j = 0; j < K; j++) {
                double a = fabs((double)h[r * K + j]);
                if (a > wmax[j]) wmax[j] = a;
            }
        free(h);
        QD_CHECK(st);
    }
    return QD_OK;
}

static void scales_for(const double *amax, const double *wmax, size_t K, double alpha, float *s) {
    for (size_t j = 0; j < K; j++) /* the paper's clamp: s >= 1e-5 */
        s[j] = amax[j] > 0 ? (float)fmax(pow(fmax(amax[j], SQ_MIN), alpha) / pow(fmax(wmax[j], SQ_MIN), 1.0 - alpha), SQ_MIN)
                           : 1.0f;
}

/* the grid's error for mapping m: sum over its quantized Linears of |Qa(X/s) Qw(W s)^T - X W^T|^2 */
static qd_status search(qd_qctx *c, const qd_block_w *w, sq_cap *cap, int m, const qd_qspec *specs, size_t K,
                        const double *wmax, double *alpha_out) {
    qd_backend_t be = c->be;
    size_t T = cap->T, sumN = 0, maxN = 0;
    for (int l = 0; l < w->nlin; l++)
        if (map_of(w, l, cap->mlp_stage) == m && !specs[l].skip) {
            sumN += w->n_out[l];
            maxN = w->n_out[l] > maxN ? w->n_out[l] : maxN;
        }
    *alpha_out = 0.5;
    if (!sumN) return QD_OK; /* nothing quantized reads this input: the default strength */
    qd_buf_t bX = NULL, bXq = NULL, bR = NULL, bW = NULL, bY = NULL, bs = NULL;
    float *s = malloc(K * sizeof *s);
    qd_status st = s ? QD_OK : qd_fail(QD_ERR_NOMEM, "smoothquant: out of memory");
    if (st == QD_OK) st = qd_buf_alloc(be, T * K, &bX);
    if (st == QD_OK) st = qd_buf_alloc(be, T * K, &bXq);
    if (st == QD_OK) st = qd_buf_alloc(be, T * sumN, &bR);
    if (st == QD_OK) st = qd_buf_alloc(be, maxN * K, &bW);
    if (st == QD_OK) st = qd_buf_alloc(be, T * maxN, &bY);
    if (st == QD_OK) st = qd_buf_alloc(be, K, &bs);
    if (st == QD_OK)
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bX, 0), .src = cap->samp[m], .src_dtype = QD_DT_F32,
                                                       .n = T * K});
    size_t off = 0; /* the full-precision outputs, once */
    for (int l = 0; st == QD_OK && l < w->nlin; l++) {
        if (map_of(w, l, cap->mlp_stage) != m || specs[l].skip) continue;
        st = qd_be_gemm(be, &(struct qd_gemm_args){.trans_b = 1, .M = T, .N = w->n_out[l], .K = K, .alpha = 1,
                                                   .A = QD_REF(bX, 0), .B = QD_REF(w->w[l], 0), .C = QD_REF(bR, off),
                                                   .lda = K, .ldb = K, .ldc = w->n_out[l]});
        off += T * w->n_out[l];
    }
    /* activations: per-token scales the server finds in fp32; weights: scales as the checkpoint stores them */
    const qd_qcfg acfg = {.kind = QD_QZ_AWQ, .bits = 8, .sym = 1},
                  wcfg = {.kind = QD_QZ_MINMAX, .bits = 8, .sym = 1, .scale_dtype = c->o.scale_dtype};
    double best = INFINITY;
    for (int k = 0; st == QD_OK && k <= SQ_GRID; k++) {
        double alpha = (double)k / SQ_GRID, loss = 0;
        scales_for(cap->obs[m].chan_amax, wmax, K, alpha, s);
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bs, 0), .src = s, .src_dtype = QD_DT_F32, .n = K});
        if (st == QD_OK)
            st = qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_DIV_COLV, .out = QD_REF(bXq, 0), .x = QD_REF(bX, 0),
                                                         .v = QD_REF(bs, 0), .rows = T, .cols = K, .ld = K});
        if (st == QD_OK) /* per token: a row of X is a "channel" of the quantizer */
            st = qd_be_quantize(be, &(struct qd_quantize_args){.cfg = acfg, .W = QD_REF(bXq, 0), .Q = QD_REF(bXq, 0),
                                                               .N = T, .K = K, .ldw = K, .group_size = K});
        off = 0;
        for (int l = 0; st == QD_OK && l < w->nlin; l++) {
            if (map_of(w, l, cap->mlp_stage) != m || specs[l].skip) continue;
            size_t N = w->n_out[l];
            double e = 0;
            st = qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_MUL_COLV, .out = QD_REF(bW, 0),
                                                         .x = QD_REF(w->w[l], 0), .v = QD_REF(bs, 0), .rows = N,
                                                         .cols = K, .ld = K});
            if (st == QD_OK)
                st = qd_be_quantize(be, &(struct qd_quantize_args){.cfg = wcfg, .W = QD_REF(bW, 0), .Q = QD_REF(bW, 0),
                                                                   .N = N, .K = K, .ldw = K, .group_size = K});
            if (st == QD_OK)
                st = qd_be_gemm(be, &(struct qd_gemm_args){.trans_b = 1, .M = T, .N = N, .K = K, .alpha = 1,
                                                           .A = QD_REF(bXq, 0), .B = QD_REF(bW, 0), .C = QD_REF(bY, 0),
                                                           .lda = K, .ldb = K, .ldc = N});
            if (st == QD_OK)
                st = qd_be_reduce(be, &(struct qd_reduce_args){.kind = QD_RED_SQDIFF, .a = QD_REF(bY, 0),
                                                               .b = QD_REF(bR, off), .n = T * N, .out = &e});
            loss += e;
            off += T * N;
        }
        if (st == QD_OK && loss < best) best = loss, *alpha_out = alpha;
    }
    free(s);
    qd_buf_free(bX), qd_buf_free(bXq), qd_buf_free(bR), qd_buf_free(bW), qd_buf_free(bY), qd_buf_free(bs);
    return st;
}

/* v [n] on the device scaled by s (div: / s, else * s) on the host and rounded to the model's dtype */
static qd_status scale_rounded(qd_qctx *c, qd_buf_t v, size_t rows, size_t K, const float *s, int div) {
    float *h = malloc(rows * K * sizeof *h + 1);
    if (!h) return qd_fail(QD_ERR_NOMEM, "smoothquant: out of memory");
    qd_dtype dt = c->cfg->dtype == QD_DT_BF16 || c->cfg->dtype == QD_DT_F16 ? c->cfg->dtype : QD_DT_F32;
    qd_status st = qd_be_download(c->be, &(struct qd_download_args){.src = QD_REF(v, 0), .dst = h, .n = rows * K});
    for (size_t r = 0; st == QD_OK && r < rows; r++)
        for (size_t j = 0; j < K; j++) {
            float *x = &h[r * K + j];
            *x = qd_scale_round(dt, div ? *x / s[j] : *x * s[j]);
        }
    if (st == QD_OK)
        st = qd_be_upload(c->be, &(struct qd_upload_args){.dst = QD_REF(v, 0), .src = h, .src_dtype = QD_DT_F32,
                                                          .n = rows * K});
    free(h);
    return st;
}

static qd_status apply(qd_qctx *c, qd_block_w *w, int m, int mlp_stage, const qd_qspec *specs, size_t K,
                       const float *s) {
    qd_buf_t norm = m == 0 ? w->ln_in : w->ln_post, bs = NULL;
    if (!norm) return qd_fail(QD_ERR_INTERNAL, "block %d: smoothquant without its norm", w->index);
    QD_CHECK(scale_rounded(c, norm, 1, K, s, 1));
    QD_CHECK(qd_buf_alloc(c->be, K, &bs));
    qd_status st = qd_be_upload(c->be, &(struct qd_upload_args){.dst = QD_REF(bs, 0), .src = s, .src_dtype = QD_DT_F32, .n = K});
    for (int l = 0; st == QD_OK && l < w->nlin; l++) {
        if (map_of(w, l, mlp_stage) != m) continue;
        if (specs[l].skip) /* kept in full precision (a router): exported as it is here */
            st = scale_rounded(c, w->w[l], w->n_out[l], K, s, 0);
        else
            st = qd_be_ewise(c->be, &(struct qd_ewise_args){.kind = QD_EW_MUL_COLV, .out = QD_REF(w->w[l], 0),
                                                            .x = QD_REF(w->w[l], 0), .v = QD_REF(bs, 0),
                                                            .rows = w->n_out[l], .cols = K, .ld = K});
    }
    qd_buf_free(bs);
    return st;
}

qd_status qd__smooth_block(qd_qctx *c, qd_block_w *w, qd_buf_t in, qd_buf_t scratch, const qd_qspec *specs) {
    const qd_model_cfg *cfg = c->cfg;
    int mlp_stage = qd_model_mlp_stage(cfg);
    size_t K[2] = {0, 0};
    for (int l = 0; l < w->nlin; l++) {
        int m = map_of(w, l, mlp_stage);
        if (m >= 0) K[m] = w->n_in[l];
    }
    sq_cap cap = {.c = c, .w = w, .mlp_stage = mlp_stage, .row0 = (c->coll ? c->o.seq_first : 0) * c->o.seq_len};
    double *wmax = NULL;
    float *s = NULL;
    qd_status st = qd_act_obs_init(&cap.obs[0], K[0]);
    if (st == QD_OK) st = qd_act_obs_init(&cap.obs[1], K[1]);
    if (st == QD_OK && c->o.smooth == QD_SMOOTH_AUTO) {
        size_t rows = c->nseq_total * c->o.seq_len;
        cap.step = rows / SQ_TOKENS ? rows / SQ_TOKENS : 1, cap.T = (rows + cap.step - 1) / cap.step;
        for (int m = 0; m < 2 && st == QD_OK; m++) {
            cap.samp[m] = calloc(cap.T * K[m] + 1, sizeof *cap.samp[m]);
            if (!cap.samp[m]) st = qd_fail(QD_ERR_NOMEM, "smoothquant: out of memory for %zu sampled tokens", cap.T);
        }
    }
    size_t Kmax = K[0] > K[1] ? K[0] : K[1];
    if (st == QD_OK) {
        wmax = malloc(Kmax * sizeof *wmax + 1), s = malloc(Kmax * sizeof *s + 1);
        if (!wmax || !s) st = qd_fail(QD_ERR_NOMEM, "smoothquant: out of memory");
    }
    /* the block as it is: both inputs observed, stopping once the MLP's input is captured */
    if (st == QD_OK) st = qd__forward_all(c, w, in, scratch, cap_cb, &cap, qd__stage_first(w, mlp_stage));
    qd_phase prev = qd_phase_set(c->be, QD_PH_OTHER);
    double alpha[2] = {c->o.smooth_alpha, c->o.smooth_alpha};
    for (int m = 0; m < 2 && st == QD_OK; m++) {
        if (!K[m]) continue;
        st = qd_act_obs_reduce(&cap.obs[m], c->coll);
        if (st == QD_OK) st = weight_max(c, w, m, mlp_stage, K[m], wmax);
        if (st == QD_OK && cap.samp[m]) st = gather_samples(c, &cap, m, K[m]);
        if (st == QD_OK && cap.samp[m]) st = search(c, w, &cap, m, specs, K[m], wmax, &alpha[m]);
        if (st == QD_OK) {
            scales_for(cap.obs[m].chan_amax, wmax, K[m], alpha[m], s);
            st = apply(c, w, m, mlp_stage, specs, K[m], s);
        }
    }
    if (st == QD_OK)
        qd_info("model.layers.%d: smoothquant alpha %.2f (input_layernorm), %.2f (post_attention_layernorm)", w->index,
                alpha[0], alpha[1]);
    qd_phase_set(c->be, prev);
    for (int m = 0; m < 2; m++) qd_act_obs_free(&cap.obs[m]), free(cap.samp[m]);
    free(wmax), free(s);
    return st;
}
