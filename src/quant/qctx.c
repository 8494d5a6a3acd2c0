/* SPDX-License-Identifier: MIT
 * qctx.c - the per-block quantization context (quantize-internal.h): its creation, the recipe lookup
 * per Linear, the chunked forward of a block and the install of dequantized weights. Shared by the
 * RTN/GPTQ driver (quantize.c), AWQ (awq.c) and the replay (replay.c), and depending on none of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-param.h"
#include "qd-phase.h"
#include "quantize-internal.h"

void qd_qctx_free(qd_qctx *c) {
    if (!c) return;
    for (int k = 0; k < c->nh; k++) {
        if (c->ain) qd_buf_free(c->ain[k].buf), free(c->ain[k].off);
        if (c->H) qd_buf_free(c->H[k]);
        if (c->Hacc) qd_buf_free(c->Hacc[k]);
        if (c->slabs) free(c->slabs[k]);
    }
    free(c->ain), free(c->H), free(c->Hacc), free(c->gK), free(c->reduced), free(c->hsrc), free(c->slabs);
    free(c->nslabs);
    free(c->expert_tokens), free(c->expert_all), free(c->expert_owner), free(c->key_local), free(c->kv_amax);
    qd_buf_free(c->Hc), qd_buf_free(c->fp_out), qd_buf_free(c->trial_out);
    qd_buf_free(c->att), qd_buf_free(c->hres), qd_buf_free(c->act), qd_buf_free(c->xn), qd_buf_free(c->y);
    qd_buf_free(c->Hs);
    qd__h_forget(c);
    free(c->keeps);
    qd_fwd_free(c->fwd);
    free(c);
}

size_t qd_quantize_chunk_seqs(const qd_quantize_opts *o) {
    if (!o->nseq || !o->seq_len) return 0;
    size_t tokens = o->chunk_tokens ? o->chunk_tokens : 8192, seqs = tokens / o->seq_len ? tokens / o->seq_len : 1;
    return seqs > o->nseq ? o->nseq : seqs;
}

qd_status qd_qctx_create(qd_backend_t be, const qd_model_cfg *cfg, const qd_quantize_opts *opts, qd_qctx **out) {
    qd_qctx *c;
    QD_ALLOC(c, 1);
    c->be = be;
    c->h_in_out = -1;
    c->cfg = cfg;
    c->o = *opts;
    c->nh = qd_model_max_hkeys(cfg);
    size_t E = cfg->moe_experts > 0 ? (size_t)cfg->moe_experts : 1, nh = (size_t)c->nh;
    c->H = calloc(nh, sizeof *c->H), c->gK = calloc(nh, sizeof *c->gK), c->reduced = calloc(nh, sizeof *c->reduced);
    c->Hacc = calloc(nh, sizeof *c->Hacc), c->hsrc = calloc(nh, sizeof *c->hsrc);
    c->slabs = calloc(nh, sizeof *c->slabs), c->nslabs = calloc(nh, sizeof *c->nslabs);
    c->expert_tokens = calloc(E, sizeof *c->expert_tokens), c->expert_all = calloc(E, 1);
    c->expert_owner = calloc(E, sizeof *c->expert_owner), c->key_local = calloc(nh, 1);
    if (!c->H || !c->Hacc || !c->gK || !c->reduced || !c->hsrc || !c->slabs || !c->nslabs || !c->expert_tokens ||
        !c->expert_all || !c->expert_owner || !c->key_local) {
        qd_qctx_free(c);
        return qd_fail(QD_ERR_NOMEM, "quantize: out of memory for %d Hessian keys", c->nh);
    }
    static const qd_lin first[4] = {QD_LIN_Q, QD_LIN_O, QD_LIN_GATE, QD_LIN_DOWN};
    for (int g = 0; g < 4; g++) { /* a dense block's keys (each block's table sets them again) */
        int64_t K;
        qd_model_linear_shape(cfg, first[g], NULL, &K);
        c->gK[g] = (size_t)K;
    }
    for (int k = 0; k < c->nh; k++) c->hsrc[k] = k;
    c->nseq_total = opts->nseq;
    if (opts->coll) { /* this rank's share of the sequences: the chunks stay those of the whole set */
        c->coll = opts->coll;
        c->o.nseq = opts->seq_count;
        c->ep = qd__ep_choose(cfg, opts);
        if (c->coll->rank == 0 && cfg->moe_experts > 0 && c->coll->size > 1)
            qd_info("quantize: expert parallel %s (--expert-parallel %s): %s", c->ep ? "on" : "off",
                    opts->expert_parallel > 0 ? "on" : opts->expert_parallel < 0 ? "off" : "auto",
                    c->ep ? "each expert solved whole by one rank, its rows sent there"
                          : "every rank accumulates every expert, Hessians all-reduced");
    }
    if (opts->nseq) {
        c->chunk_seqs = qd_quantize_chunk_seqs(opts);
        qd_status st = qd_fwd_create(be, cfg, opts->seq_len, c->chunk_seqs, &c->fwd);
        if (st == QD_OK && cfg->moe_experts > 0) { /* c->o.nseq: this rank's share */
            c->nkeeps = (c->o.nseq + c->chunk_seqs - 1) / c->chunk_seqs;
            c->keeps = calloc(c->nkeeps + 1, sizeof *c->keeps);
            if (!c->keeps) st = qd_fail(QD_ERR_NOMEM, "quantize: out of memory for %zu chunks' routings", c->nkeeps);
        }
        if (st != QD_OK) {
            qd_qctx_free(c);
            return st;
        }
    }
    *out = c;
    return QD_OK;
}

void qd_qctx_spec(const qd_qctx *c, int block, const qd_linear *lin, qd_qspec *out, char *name, size_t cap) {
    snprintf(name, cap, "model.layers.%d.%s", block, lin->module);
    qd_recipe_resolve(c->o.recipe, &c->o.base, name, out);
    out->scale_dtype = c->o.scale_dtype;
    if (!lin->quantize) out->skip = 1;
}

void qd__set_keys(qd_qctx *c, const qd_block_w *w) {
    for (int k = 0; k < c->nh; k++) c->hsrc[k] = k;
    for (int l = 0; l < w->nlin; l++)
        if (w->lin[l].hkey < c->nh) c->gK[w->lin[l].hkey] = w->n_in[l];
}

void qd__h_forget(qd_qctx *c) {
    c->h_in_out = -1;
    for (size_t i = 0; c->keeps && i < c->nkeeps; i++) qd_route_keep_clear(&c->keeps[i]);
}

qd_status qd__forward_all(qd_qctx *c, const qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_capture_fn cap, void *user,
                          int stop_after) {
    return qd__forward_all_moe(c, w, in, out, cap, user, stop_after, NULL, QD_FWD_H_COMPUTE);
}

qd_status qd__forward_all_moe(qd_qctx *c, const qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_capture_fn cap,
                              void *user, int stop_after, const struct qd_moe_calib *moe, qd_fwd_h h_mode) {
    size_t S = c->o.seq_len, H = (size_t)c->cfg->hidden;
    qd_phase prev = qd_phase_set(c->be, QD_PH_FORWARD);
    for (size_t s0 = 0; s0 < c->o.nseq; s0 += c->chunk_seqs) {
        size_t ns = c->o.nseq - s0 < c->chunk_seqs ? c->o.nseq - s0 : c->chunk_seqs, ci = s0 / c->chunk_seqs;
        struct qd_moe_calib mc = moe ? *moe : (struct qd_moe_calib){0};
        /* the routing goes with h: kept by the pass that saves h, read by those that reuse it */
        mc.keep = h_mode != QD_FWD_H_COMPUTE && c->keeps && ci < c->nkeeps ? &c->keeps[ci] : NULL;
        QD_CHECK(qd_block_forward(c->fwd, &(struct qd_block_fwd_args){.w = w, .x = QD_REF(in, s0 * S * H),
                                                                      .out = QD_REF(out, s0 * S * H), .nseq = ns,
                                                                      .capture = cap, .user = user,
                                                                      .stop_after = stop_after,
                                                                      .moe = mc, .h_mode = h_mode}));
    }
    qd_phase_set(c->be, prev);
    return QD_OK;
}

/* QD_CHECK_INSTALL=1 (a check for GPU runs, slow): the device-installed weight must equal the host's
 * qd_qlinear_dequant_rounded bit for bit; how says which install path made it. */
static qd_status check_install(qd_qctx *c, qd_block_w *w, int l, const qd_qresult *r, const char *how) {
    size_t n = (size_t)r->q.N * (size_t)r->q.K, bad = 0;
    float *host = malloc(n * sizeof *host), *dev = malloc(n * sizeof *dev);
    qd_status st = host && dev ? QD_OK : qd_fail(QD_ERR_NOMEM, "%s: out of memory checking the install", r->q.name);
    if (st == QD_OK) st = qd_be_download(c->be, &(struct qd_download_args){.src = QD_REF(w->w[l], 0), .dst = dev, .n = n});
    if (st == QD_OK) {
        qd_qlinear_dequant_rounded(&r->q, c->o.scale_dtype, host);
        for (size_t i = 0; i < n; i++) bad += memcmp(&host[i], &dev[i], sizeof *host) != 0;
        if (bad) st = qd_fail(QD_ERR_INTERNAL, "%s: device install (%s) differs from the host dequantization in %zu of "
                              "%zu weights", r->q.name, how, bad, n);
        else qd_info("%s: device install bit-identical to the host dequantization (%zu weights, %s)", r->q.name, n, how);
    }
    free(host), free(dev);
    return st;
}

/* On a backend with the u8_codes op: dequantize the byte codes on the device - the same single
 * multiply as qd_qlinear_dequant_rounded, so the weight is bit-identical to the host path's. The codes
 * are r->dev_codes when the quantizer left them there (the bytes it downloaded into r->q.codes), else
 * r->q.codes uploaded (a quarter of the fp32 weight); the rounded scales, zeros and g_idx are uploaded. */
static qd_status install_device(qd_qctx *c, qd_block_w *w, int l, const qd_qresult *r) {
    qd_backend_t be = c->be;
    const qd_qlinear *q = &r->q;
    size_t N = (size_t)q->N, K = (size_t)q->K, G = (size_t)q->G, n = N * K, words = (n + 3) / 4;
    int resident = r->dev_codes && qd_buf_len(r->dev_codes) >= words;
    float *sc = malloc(G * N * sizeof *sc);
    uint8_t *pad = !resident && n % 4 ? calloc(words, 4) : NULL; /* the upload reads whole words */
    qd_buf_t bc = NULL, bs = NULL, bz = NULL, bg = NULL;
    qd_status st = QD_OK;
    if (!sc || (!resident && n % 4 && !pad)) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory installing the quantized weight", q->name);
        goto done;
    }
    for (size_t i = 0; i < G * N; i++) sc[i] = qd_scale_round(c->o.scale_dtype, q->scales[i]);
    if (pad) memcpy(pad, q->codes, n);
    if (!resident) {
        QD_CHECK_GOTO(qd_buf_alloc(be, words, &bc), st, done);
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bc, 0),
                                                                .src = pad ? (void *)pad : q->codes,
                                                                .src_dtype = QD_DT_U32, .n = words}), st, done);
    }
    QD_CHECK_GOTO(qd_buf_alloc(be, G * N, &bs), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, G * N, &bz), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &bg), st, done);
    QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bs, 0), .src = sc, .src_dtype = QD_DT_F32,
                                                            .n = G * N}), st, done);
    QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bz, 0), .src = q->zeros,
                                                            .src_dtype = QD_DT_I32, .n = G * N}), st, done);
    QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bg, 0), .src = q->g_idx,
                                                            .src_dtype = QD_DT_I32, .n = K}), st, done);
    st = qd_be_u8_codes(be, &(struct qd_u8_codes_args){.dequant = 1, .W = QD_REF(w->w[l], 0),
                                                        .codes = QD_REF(resident ? r->dev_codes : bc, 0),
                                                        .scales = QD_REF(bs, 0), .zeros = QD_REF(bz, 0),
                                                        .g_idx = QD_REF(bg, 0), .N = N, .K = K, .G = G});
    if (st == QD_OK && qd_param_str(QD_PARAM_CHECK_INSTALL))
        st = check_install(c, w, l, r, resident ? "codes kept on the device" : "codes uploaded");
done:
    qd_buf_free(bc), qd_buf_free(bs), qd_buf_free(bz), qd_buf_free(bg);
    free(sc), free(pad);
    return st;
}

qd_status qd__install(qd_qctx *c, qd_block_w *w, int l, qd_qresult *r) {
    qd_phase prev = qd_phase_set(c->be, QD_PH_INSTALL);
    size_t n = (size_t)r->q.N * (size_t)r->q.K;
    qd_status st;
    if (qd_be_has(c->be, QD_OPT_U8_CODES) && !qd_scheme_is_float(r->q.scheme)) { /* the kernel knows integers */
        st = install_device(c, w, l, r);
    } else { /* host backends and the float schemes: dequantize here, upload fp32 (the reference path) */
        float *deq = malloc(n * sizeof *deq);
        st = deq ? QD_OK : qd_fail(QD_ERR_NOMEM, "%s: out of memory for the dequantized weight", r->q.name);
        if (st == QD_OK) {
            qd_qlinear_dequant_rounded(&r->q, c->o.scale_dtype, deq);
            st = qd_be_upload(c->be, &(struct qd_upload_args){.dst = QD_REF(w->w[l], 0), .src = deq,
                                                              .src_dtype = QD_DT_F32, .n = n});
        }
        free(deq);
        /* a device backend's float-scheme weight: the upload checked as the integer installs are */
        if (st == QD_OK && qd_be_has(c->be, QD_OPT_U8_CODES) && qd_param_str(QD_PARAM_CHECK_INSTALL))
            st = check_install(c, w, l, r, "dequantized on the host");
    }
    qd_buf_free(r->dev_codes); /* used, or of no use to a host dequantization */
    r->dev_codes = NULL;
    qd_phase_set(c->be, prev);
    return st;
}
