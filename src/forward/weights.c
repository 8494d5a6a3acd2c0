/* SPDX-License-Identifier: MIT
 * weights.c - loading a block's weights and the model's ends (embedding, final norm, lm_head) from a
 * checkpoint into backend buffers, converting bf16/fp16 to fp32 on upload, checking every shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-forward.h"
#include "qd-qformat-read.h"
#include "qd-log.h"

static const char *const lin_names[QD_NLIN] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                               "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                               "mlp.down_proj"};
static const int lin_groups[QD_NLIN] = {0, 0, 0, 1, 2, 2, 3};

const char *qd_lin_name(qd_lin l) { return l < QD_NLIN ? lin_names[l] : "?"; }
int qd_lin_group(qd_lin l) { return l < QD_NLIN ? lin_groups[l] : -1; }
qd_lin qd_lin_group_first(int group) {
    static const qd_lin first[4] = {QD_LIN_Q, QD_LIN_O, QD_LIN_GATE, QD_LIN_DOWN};
    return group >= 0 && group < 4 ? first[group] : QD_NLIN;
}

/* Upload tensor `name` (required or optional) after checking its shape equals dims. */
static qd_status load_tensor(qd_backend_t be, const qd_checkpoint *ck, const char *name, int ndim,
                             const int64_t *dims, int required, qd_buf_t *out) {
    *out = NULL;
    const qd_st_tensor *t = qd_ckpt_find(ck, name);
    if (!t) {
        if (!required) return QD_OK;
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s' is missing", ck->dir, name);
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == dims[i];
    if (!ok)
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s' has shape [%lld%s] where the config implies [%lld, %lld]",
                       ck->dir, name, (long long)t->shape[0], t->ndim > 1 ? ", ..." : "", (long long)dims[0],
                       ndim > 1 ? (long long)dims[1] : 1LL);
    if (!qd_dtype_is_float(t->dtype))
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (float tensors only)", ck->dir, name,
                       qd_dtype_name(t->dtype));
    const void *data = qd_ckpt_data(ck, t);
    if (!data) return qd_fail(QD_ERR_INTERNAL, "%s: checkpoint opened without its data", ck->dir);
    qd_buf_t b;
    QD_CHECK(qd_buf_alloc(be, (size_t)t->numel, &b));
    qd_status st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b, 0), .src = data, .src_dtype = t->dtype,
                                                             .n = (size_t)t->numel});
    if (st != QD_OK) {
        qd_buf_free(b);
        return st;
    }
    *out = b;
    return QD_OK;
}

/* The fp32 weight of a quantized Linear, whatever format stores it (shard/qd-qformat-read.h). */
static qd_status load_quantized(qd_backend_t be, const qd_checkpoint *ck, const char *prefix, size_t N, size_t K,
                                qd_buf_t *out) {
    qd_qformat *qf = NULL;
    float *w = NULL;
    int64_t n = 0, k = 0;
    qd_status st;
    QD_CHECK_GOTO(qd_qformat_open(ck->dir, &qf), st, done);
    QD_CHECK_GOTO(qd_qformat_read_linear(qf, ck, prefix, &w, &n, &k, NULL), st, done);
    if ((size_t)n != N || (size_t)k != K) {
        st = qd_fail(QD_ERR_FORMAT, "%s: %s dequantises to [%lld, %lld], the config implies [%zu, %zu]", ck->dir, prefix,
                     (long long)n, (long long)k, N, K);
        goto done;
    }
    QD_CHECK_GOTO(qd_buf_alloc(be, N * K, out), st, done);
    st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(*out, 0), .src = w, .src_dtype = QD_DT_F32, .n = N * K});
    if (st != QD_OK) {
        qd_buf_free(*out);
        *out = NULL;
    }
done:
    free(w);
    qd_qformat_close(qf);
    return st;
}

qd_status qd_block_w_load(qd_backend_t be, const qd_model_cfg *cfg, const qd_checkpoint *ck, int index,
                          qd_block_w *out) {
    memset(out, 0, sizeof *out);
    out->index = index;
    size_t H = (size_t)cfg->hidden, I = (size_t)cfg->intermediate, hd = (size_t)cfg->head_dim;
    size_t qo = (size_t)cfg->nheads * hd, kvo = (size_t)cfg->nkv * hd;
    const size_t outs[QD_NLIN] = {qo, kvo, kvo, H, I, I, H}, ins[QD_NLIN] = {H, H, H, qo, H, H, I};
    const int has_bias[QD_NLIN] = {cfg->attn_bias, cfg->attn_bias, cfg->attn_bias, cfg->o_bias,
                                   cfg->mlp_bias, cfg->mlp_bias, cfg->mlp_bias};
    char name[256];
    qd_status st = QD_OK;
    for (int l = 0; l < QD_NLIN; l++) {
        out->n_out[l] = outs[l];
        out->n_in[l] = ins[l];
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", index, lin_names[l]);
        const qd_st_tensor *wt = qd_ckpt_find(ck, name);
        if (!wt || !qd_dtype_is_float(wt->dtype)) {
            /* a quantized checkpoint (GPTQ, AWQ, compressed-tensors): dequantise on load */
            snprintf(name, sizeof name, "model.layers.%d.%s", index, lin_names[l]);
            QD_CHECK_GOTO(load_quantized(be, ck, name, outs[l], ins[l], &out->w[l]), st, fail);
        } else {
            int64_t d2w[2] = {(int64_t)outs[l], (int64_t)ins[l]};
            QD_CHECK_GOTO(load_tensor(be, ck, name, 2, d2w, 1, &out->w[l]), st, fail);
        }
        int64_t d2[2] = {(int64_t)outs[l], (int64_t)ins[l]};
        if (has_bias[l]) {
            snprintf(name, sizeof name, "model.layers.%d.%s.bias", index, lin_names[l]);
            QD_CHECK_GOTO(load_tensor(be, ck, name, 1, d2, 1, &out->b[l]), st, fail);
        }
    }
    int64_t dh[1] = {(int64_t)H}, dhd[1] = {(int64_t)hd};
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", index);
    QD_CHECK_GOTO(load_tensor(be, ck, name, 1, dh, 1, &out->ln_in), st, fail);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", index);
    QD_CHECK_GOTO(load_tensor(be, ck, name, 1, dh, 1, &out->ln_post), st, fail);
    if (cfg->qk_norm) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", index);
        QD_CHECK_GOTO(load_tensor(be, ck, name, 1, dhd, 1, &out->q_norm), st, fail);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", index);
        QD_CHECK_GOTO(load_tensor(be, ck, name, 1, dhd, 1, &out->k_norm), st, fail);
    }
    return QD_OK;
fail:
    qd_block_w_free(out);
    return st;
}

void qd_block_w_free(qd_block_w *w) {
    if (!w) return;
    for (int l = 0; l < QD_NLIN; l++) {
        qd_buf_free(w->w[l]);
        qd_buf_free(w->b[l]);
        w->w[l] = w->b[l] = NULL;
    }
    qd_buf_free(w->ln_in), qd_buf_free(w->ln_post), qd_buf_free(w->q_norm), qd_buf_free(w->k_norm);
    w->ln_in = w->ln_post = w->q_norm = w->k_norm = NULL;
}

qd_status qd_head_load(qd_backend_t be, const qd_model_cfg *cfg, const qd_checkpoint *ck, int with_lm_head,
                       qd_head *out) {
    memset(out, 0, sizeof *out);
    out->cfg = cfg;
    out->ck = ck;
    out->embed = qd_ckpt_find(ck, "model.embed_tokens.weight");
    if (!out->embed) return qd_fail(QD_ERR_FORMAT, "%s: tensor 'model.embed_tokens.weight' is missing", ck->dir);
    if (out->embed->ndim != 2 || out->embed->shape[0] != cfg->vocab || out->embed->shape[1] != cfg->hidden)
        return qd_fail(QD_ERR_FORMAT, "%s: 'model.embed_tokens.weight' is not [%d, %d]", ck->dir, cfg->vocab,
                       cfg->hidden);
    if (!qd_dtype_is_float(out->embed->dtype))
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: 'model.embed_tokens.weight' has dtype %s", ck->dir,
                       qd_dtype_name(out->embed->dtype));
    int64_t dh[1] = {cfg->hidden}, dv[2] = {cfg->vocab, cfg->hidden};
    QD_CHECK(load_tensor(be, ck, "model.norm.weight", 1, dh, 1, &out->norm));
    if (!with_lm_head) return QD_OK;
    /* a checkpoint may carry lm_head.weight even when tied; prefer it when present */
    const char *name = qd_ckpt_find(ck, "lm_head.weight") || !cfg->tie_embed ? "lm_head.weight"
                                                                              : "model.embed_tokens.weight";
    qd_status st = load_tensor(be, ck, name, 2, dv, 1, &out->lm_head);
    if (st != QD_OK) qd_head_free(out);
    return st;
}

void qd_head_free(qd_head *h) {
    if (!h) return;
    qd_buf_free(h->norm);
    qd_buf_free(h->lm_head);
    h->norm = h->lm_head = NULL;
}

qd_status qd_embed(qd_backend_t be, const qd_head *h, const int32_t *ids, size_t n, qd_ref x) {
    size_t H = (size_t)h->cfg->hidden, esz = qd_dtype_bits(h->embed->dtype) / 8;
    const unsigned char *data = qd_ckpt_data(h->ck, h->embed);
    if (!data) return qd_fail(QD_ERR_INTERNAL, "%s: checkpoint opened without its data", h->ck->dir);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= h->cfg->vocab)
            return qd_fail(QD_ERR_FORMAT, "token id %d at position %zu is outside the vocabulary (%d)", ids[i], i,
                           h->cfg->vocab);
    /* rows gathered in the checkpoint's dtype and converted by the upload (exact: bf16/f16 -> fp32), in
     * chunks: half the host work and transfer of fp32 rows for bf16 models, and a bounded buffer */
    size_t chunk = n < 8192 ? n : 8192;
    unsigned char *rows = malloc(chunk * H * esz + 1);
    if (!rows) return qd_fail(QD_ERR_NOMEM, "embedding: out of memory for %zu rows", chunk);
    qd_status st = QD_OK;
    for (size_t r0 = 0; r0 < n && st == QD_OK; r0 += chunk) {
        size_t m = n - r0 < chunk ? n - r0 : chunk;
        for (size_t i = 0; i < m; i++) memcpy(rows + i * H * esz, data + (size_t)ids[r0 + i] * H * esz, H * esz);
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(x.buf, x.off + r0 * H), .src = rows,
                                                       .src_dtype = h->embed->dtype, .n = m * H});
    }
    free(rows);
    return st;
}
