/* SPDX-License-Identifier: MIT
 * kv-observe.c - --kv-cache: the largest |key| and |value| of each KV head of a block over every
 * calibration token, as compressed-tensors' attention hook sees them (the key after k_norm and rope,
 * the value as v_proj gives it) and llm-compressor's static min-max observer keeps them (the running
 * max over all calibration batches).
 *
 * Observed once per block, before the block is quantized: the block's input is the chained one (the
 * earlier blocks quantized, AWQ: full precision) and its k_proj/v_proj are still full precision, which
 * is what llm-compressor's sequential pipeline observes (its calibration pass of a layer runs before
 * the layer's weights are quantized). Data-parallel ranks each observe their sequences; the maxima are
 * gathered and reduced with max, which is exact, so every rank count gives the same bits. */
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-phase.h"
#include "quantize-internal.h"

const double *qd_qctx_kv_amax(const qd_qctx *c) { return c->kv_amax; }

/* max |x| of head h's columns [rows, hd] of src [rows, nkv*hd] (copied into tmp first) */
static qd_status head_amax(qd_backend_t be, qd_buf_t src, qd_buf_t tmp, size_t rows, size_t nkv, size_t hd, size_t h,
                           double *amax) {
    QD_CHECK(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(tmp, 0), .src = QD_REF(src, h * hd), .rows = rows,
                                                   .cols = hd, .ldd = hd, .lds = nkv * hd}));
    double m = 0;
    QD_CHECK(qd_be_reduce(be, &(struct qd_reduce_args){.kind = QD_RED_ABSMAX, .a = QD_REF(tmp, 0), .n = rows * hd,
                                                       .out = &m}));
    if (m > *amax) *amax = m;
    return QD_OK;
}

/* the rank's chunks of inputs: k and v of each, post-rope k, head maxima into amax [2 * nkv] */
static qd_status observe_local(qd_qctx *c, const qd_block_w *w, qd_buf_t inputs, double *amax) {
    const qd_model_cfg *cfg = c->cfg;
    qd_backend_t be = c->be;
    size_t S = c->o.seq_len, H = (size_t)cfg->hidden, hd = (size_t)cfg->head_dim, nkv = (size_t)cfg->nkv;
    size_t half = hd / 2, crow = c->chunk_seqs * S, kvo = nkv * hd;
    float *cs = malloc(S * half * sizeof *cs), *sn = malloc(S * half * sizeof *sn);
    qd_buf_t cosb = NULL, sinb = NULL, n = NULL, k = NULL, v = NULL, tmp = NULL;
    qd_status st = cs && sn ? QD_OK : qd_fail(QD_ERR_NOMEM, "--kv-cache: out of memory for rope tables");
    if (st == QD_OK) st = qd_rope_tables(cfg, S, cs, sn);
    if (st == QD_OK) st = qd_buf_alloc(be, S * half, &cosb);
    if (st == QD_OK) st = qd_buf_alloc(be, S * half, &sinb);
    if (st == QD_OK) st = qd_buf_alloc(be, crow * H, &n);
    if (st == QD_OK) st = qd_buf_alloc(be, crow * kvo, &k);
    if (st == QD_OK) st = qd_buf_alloc(be, crow * kvo, &v);
    if (st == QD_OK) st = qd_buf_alloc(be, crow * hd, &tmp);
    if (st == QD_OK)
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(cosb, 0), .src = cs, .src_dtype = QD_DT_F32,
                                                       .n = S * half});
    if (st == QD_OK)
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(sinb, 0), .src = sn, .src_dtype = QD_DT_F32,
                                                       .n = S * half});
    for (size_t s0 = 0; st == QD_OK && s0 < c->o.nseq; s0 += c->chunk_seqs) {
        size_t ns = c->o.nseq - s0 < c->chunk_seqs ? c->o.nseq - s0 : c->chunk_seqs, rows = ns * S;
        QD_CHECK_GOTO(qd_norm_forward(be, cfg, w->ln_in, QD_REF(inputs, s0 * S * H), QD_REF(n, 0), rows), st, out);
        QD_CHECK_GOTO(qd_linear_forward(be, w, QD_LIN_K, QD_REF(n, 0), QD_REF(k, 0), rows), st, out);
        QD_CHECK_GOTO(qd_linear_forward(be, w, QD_LIN_V, QD_REF(n, 0), QD_REF(v, 0), rows), st, out);
        struct qd_rmsnorm_args kn = {.out = QD_REF(k, 0), .x = QD_REF(k, 0), .weight = QD_REF(w->k_norm, 0),
                                     .rows = rows * nkv, .dim = hd, .ld = hd, .eps = (float)cfg->rms_eps};
        if (w->k_norm) QD_CHECK_GOTO(qd_be_rmsnorm(be, &kn), st, out); /* Qwen3: before rope, as the forward */
        QD_CHECK_GOTO(qd_be_rope(be, &(struct qd_rope_args){.x = QD_REF(k, 0), .cos = QD_REF(cosb, 0),
                                                            .sin = QD_REF(sinb, 0), .rows = rows, .heads = nkv,
                                                            .head_dim = hd, .ld = kvo, .seq_len = S}), st, out);
        for (size_t h = 0; h < nkv; h++) {
            QD_CHECK_GOTO(head_amax(be, k, tmp, rows, nkv, hd, h, &amax[h]), st, out);
            QD_CHECK_GOTO(head_amax(be, v, tmp, rows, nkv, hd, h, &amax[nkv + h]), st, out);
        }
    }
out:
    free(cs), free(sn);
    qd_buf_free(cosb), qd_buf_free(sinb), qd_buf_free(n), qd_buf_free(k), qd_buf_free(v), qd_buf_free(tmp);
    return st;
}

qd_status qd__kv_observe(qd_qctx *c, const qd_block_w *w, qd_buf_t inputs) {
    size_t nkv = (size_t)c->cfg->nkv, n = 2 * nkv;
    if (c->cfg->mla) return qd_fail(QD_ERR_UNSUPPORTED, "block %d: --kv-cache on an MLA block", w->index);
    if (!c->nseq_total) /* the run refuses --kv-cache without --calib; scales of nothing would look valid */
        return qd_fail(QD_ERR_INTERNAL, "block %d: --kv-cache without calibration tokens", w->index);
    if (!c->kv_amax && !(c->kv_amax = calloc(n, sizeof *c->kv_amax)))
        return qd_fail(QD_ERR_NOMEM, "block %d: --kv-cache: out of memory", w->index);
    memset(c->kv_amax, 0, n * sizeof *c->kv_amax);
    qd_phase prev = qd_phase_set(c->be, QD_PH_FORWARD);
    qd_status st = c->fwd && inputs && c->o.nseq ? observe_local(c, w, inputs, c->kv_amax) : QD_OK;
    qd_phase_set(c->be, prev);
    if (st != QD_OK || !c->coll || c->coll->size <= 1) return st;
    size_t *counts = malloc((size_t)c->coll->size * sizeof *counts);
    double *all = malloc((size_t)c->coll->size * n * sizeof *all);
    if (!counts || !all) st = qd_fail(QD_ERR_NOMEM, "block %d: --kv-cache: out of memory", w->index);
    for (int r = 0; st == QD_OK && r < c->coll->size; r++) counts[r] = n * sizeof *all;
    if (st == QD_OK) st = c->coll->allgatherv(c->coll, c->kv_amax, counts, all);
    for (int r = 0; st == QD_OK && r < c->coll->size; r++)
        for (size_t i = 0; i < n; i++)
            if (all[(size_t)r * n + i] > c->kv_amax[i]) c->kv_amax[i] = all[(size_t)r * n + i];
    free(counts), free(all);
    return st;
}
