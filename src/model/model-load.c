/* SPDX-License-Identifier: MIT
 * model-load.c - the loader: a block's weights and the model's ends (embedding, final norm, lm_head)
 * from the handle's checkpoint into backend buffers, converting bf16/fp16 to fp32 on upload (an FP8
 * source's e4m3 Linears on the backend, from their bytes) and checking every shape against the
 * architecture's table (contract in qd-model-handle.h). Every weight is checked finite once on the
 * backend: a NaN in a router, a norm or an expert no token reaches would otherwise surface (if ever) as a
 * non-finite loss or activation far from the tensor that holds it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-model-internal.h"
#include "qd-qformat-fp8.h"
#include "qd-qformat-read.h"

/* the file of the checkpoint that holds t, for messages */
static const char *file_of(const qd_checkpoint *ck, const qd_st_tensor *t) {
    if (t->file_index < 0 || t->file_index >= ck->nfiles) return "model.safetensors";
    const char *p = ck->files[t->file_index]->path, *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* b (n floats, uploaded from tensor name of file; NULL file: dequantized from Linear name) holds no NaN or Inf */
static qd_status check_finite(qd_backend_t be, const qd_checkpoint *ck, const char *file, const char *name, qd_buf_t b,
                              size_t n) {
    double bad = 0;
    QD_CHECK(qd_be_reduce(be, &(struct qd_reduce_args){.kind = QD_RED_NONFINITE, .a = QD_REF(b, 0), .n = n,
                                                       .out = &bad}));
    if (bad > 0 && !file)
        return qd_fail(QD_ERR_FORMAT, "%s: Linear '%s' dequantizes to %.0f NaN/Inf value%s; a checkpoint's weights "
                       "must be finite", ck->dir, name, bad, bad == 1 ? "" : "s");
    if (bad > 0)
        return qd_fail(QD_ERR_FORMAT, "%s/%s: tensor '%s' holds %.0f NaN/Inf value%s; a checkpoint's weights must be "
                       "finite", ck->dir, file, name, bad, bad == 1 ? "" : "s");
    return QD_OK;
}

/* Upload t (name for messages; NULL t: missing) after checking its shape equals dims. */
static qd_status load_tensor(qd_backend_t be, const qd_checkpoint *ck, const qd_st_tensor *t, const char *name,
                             int ndim, const int64_t *dims, qd_buf_t *out) {
    *out = NULL;
    if (!t) return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s' is missing", ck->dir, name);
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
    if (st == QD_OK) st = check_finite(be, ck, file_of(ck, t), name, b, (size_t)t->numel);
    if (st != QD_OK) {
        qd_buf_free(b);
        return st;
    }
    *out = b;
    return QD_OK;
}

static qd_status load_named(qd_backend_t be, const qd_checkpoint *ck, const char *name, int ndim,
                            const int64_t *dims, qd_buf_t *out) {
    return load_tensor(be, ck, qd_ckpt_find(ck, name), name, ndim, dims, out);
}

/* An FP8 source Linear dequantized by the backend: its e4m3 bytes and checked scales go to the device,
 * not a host fp32 matrix four times their size (qd_be_fp8_dequant, the bits of the host reader). */
static qd_status load_fp8(qd_backend_t be, const qd_checkpoint *ck, const char *prefix, const int block[2], size_t N,
                          size_t K, qd_buf_t *out) {
    qd_fp8_codes c;
    int64_t nan_at = -1;
    qd_status st;
    QD_CHECK_GOTO(qd_fp8_codes_open(ck, prefix, block, &c), st, done);
    if ((size_t)c.N != N || (size_t)c.K != K) {
        st = qd_fail(QD_ERR_FORMAT, "%s: %s dequantises to [%lld, %lld], the config implies [%zu, %zu]", ck->dir, prefix,
                     (long long)c.N, (long long)c.K, N, K);
        goto done;
    }
    QD_CHECK_GOTO(qd_buf_alloc(be, N * K, out), st, done);
    st = qd_be_fp8_dequant(be, &(struct qd_fp8_dequant_args){.dst = QD_REF(*out, 0), .codes = c.codes, .scale = c.scale,
                                                             .N = N, .K = K, .bn = (size_t)c.bn, .bk = (size_t)c.bk,
                                                             .nan_at = &nan_at});
    if (st == QD_OK && nan_at >= 0) st = qd_fp8_nan_fail(ck, c.weight, c.K, nan_at);
    if (st == QD_OK) st = check_finite(be, ck, NULL, prefix, *out, N * K); /* a code x a huge scale: Inf */
    if (st != QD_OK) {
        qd_buf_free(*out);
        *out = NULL;
    }
done:
    qd_fp8_codes_close(&c);
    return st;
}

/* The fp32 weight of a quantized Linear, whatever format stores it (qd-qformat-read.h). */
static qd_status load_quantized(qd_backend_t be, const qd_checkpoint *ck, const char *prefix, size_t N, size_t K,
                                qd_buf_t *out) {
    qd_qformat *qf = NULL;
    float *w = NULL;
    int64_t n = 0, k = 0;
    const int *fp8_block;
    qd_status st;
    QD_CHECK_GOTO(qd_qformat_open(ck->dir, &qf), st, done);
    if (qd_qformat_fp8_source(qf, ck, prefix, &fp8_block)) {
        st = load_fp8(be, ck, prefix, fp8_block, N, K, out);
        goto done;
    }
    QD_CHECK_GOTO(qd_qformat_read_linear(qf, ck, prefix, &w, &n, &k, NULL), st, done);
    if ((size_t)n != N || (size_t)k != K) {
        st = qd_fail(QD_ERR_FORMAT, "%s: %s dequantises to [%lld, %lld], the config implies [%zu, %zu]", ck->dir, prefix,
                     (long long)n, (long long)k, N, K);
        goto done;
    }
    QD_CHECK_GOTO(qd_buf_alloc(be, N * K, out), st, done);
    st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(*out, 0), .src = w, .src_dtype = QD_DT_F32, .n = N * K});
    if (st == QD_OK) st = check_finite(be, ck, NULL, prefix, *out, N * K);
    if (st != QD_OK) {
        qd_buf_free(*out);
        *out = NULL;
    }
done:
    free(w);
    qd_qformat_close(qf);
    return st;
}

static qd_buf_t *norm_slot(qd_block_w *w, int norm) {
    switch (norm) {
    case QD_NORM_IN: return &w->ln_in;
    case QD_NORM_POST: return &w->ln_post;
    case QD_NORM_Q: return &w->q_norm;
    case QD_NORM_Q_A: return &w->q_a_norm;
    case QD_NORM_KV_A: return &w->kv_a_norm;
    case QD_NORM_EBIAS: return &w->e_bias;
    default: return &w->k_norm;
    }
}

/* the block's Linear table and its arrays, sized for it */
static qd_status block_alloc(const qd_model_cfg *cfg, int index, qd_block_w *out) {
    int n = qd_model_linears(cfg, index, NULL, 0);
    out->nlin = n;
    out->lin = calloc((size_t)n, sizeof *out->lin);
    out->w = calloc((size_t)n, sizeof *out->w);
    out->b = calloc((size_t)n, sizeof *out->b);
    out->n_out = calloc((size_t)n, sizeof *out->n_out);
    out->n_in = calloc((size_t)n, sizeof *out->n_in);
    if (!out->lin || !out->w || !out->b || !out->n_out || !out->n_in)
        return qd_fail(QD_ERR_NOMEM, "block %d: out of memory for its %d Linears", index, n);
    qd_model_linears(cfg, index, out->lin, n);
    for (int l = 0; l < n; l++) {
        out->n_out[l] = (size_t)out->lin[l].N;
        out->n_in[l] = (size_t)out->lin[l].K;
    }
    return QD_OK;
}

qd_status qd_model_block_load(qd_backend_t be, const qd_model *m, int index, qd_block_w *out) {
    memset(out, 0, sizeof *out);
    out->index = index;
    const qd_model_cfg *cfg = &m->cfg;
    if (index < 0 || index >= cfg->nlayers)
        return qd_fail(QD_ERR_INTERNAL, "%s: block %d outside 0..%d", m->ck->dir, index, cfg->nlayers - 1);
    char name[320];
    qd_status st = QD_OK;
    QD_CHECK_GOTO(block_alloc(cfg, index, out), st, fail);
    for (size_t i = 0; i < m->nbt[index]; i++) {
        const qd_block_tensor_ref *bt = &m->refs[(size_t)index * m->ntper + i];
        const qd_st_tensor *t = m->index[(size_t)index * m->ntper + i];
        snprintf(name, sizeof name, "model.layers.%d.%s", index, bt->suffix);
        if (bt->role == QD_T_LINEAR_W) {
            const int64_t d2[2] = {(int64_t)out->n_out[bt->slot], (int64_t)out->n_in[bt->slot]};
            if (!t || !qd_dtype_is_float(t->dtype)) {
                /* a quantized checkpoint (GPTQ, AWQ, compressed-tensors): dequantise on load */
                snprintf(name, sizeof name, "model.layers.%d.%s", index, out->lin[bt->slot].module);
                QD_CHECK_GOTO(load_quantized(be, m->ck, name, out->n_out[bt->slot], out->n_in[bt->slot],
                                             &out->w[bt->slot]), st, fail);
            } else {
                QD_CHECK_GOTO(load_tensor(be, m->ck, t, name, 2, d2, &out->w[bt->slot]), st, fail);
            }
        } else if (bt->role == QD_T_LINEAR_B) {
            const int64_t d1[1] = {(int64_t)out->n_out[bt->slot]};
            QD_CHECK_GOTO(load_tensor(be, m->ck, t, name, 1, d1, &out->b[bt->slot]), st, fail);
        } else {
            const int64_t d1[1] = {qd_model_norm_size(cfg, (qd_norm)bt->slot)};
            QD_CHECK_GOTO(load_tensor(be, m->ck, t, name, 1, d1, norm_slot(out, bt->slot)), st, fail);
        }
    }
    return QD_OK;
fail:
    qd_block_w_free(out);
    return st;
}

void qd_model_block_prefetch(const qd_model *m, int index) {
    const qd_model_cfg *cfg = &m->cfg;
    if (index < 0 || index >= cfg->nlayers) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (page == 0 || page == (uintptr_t)-1) page = 4096;
    for (size_t i = 0; i < m->nbt[index]; i++) {
        const qd_st_tensor *t = m->index[(size_t)index * m->ntper + i];
        const void *data = t ? qd_ckpt_data(m->ck, t) : NULL;
        if (!data || !t->nbytes) continue;
        uintptr_t lo = (uintptr_t)data / page * page, hi = (uintptr_t)data + t->nbytes;
        (void)madvise((void *)lo, hi - lo, MADV_WILLNEED); /* a hint: its failure changes nothing */
    }
}

void qd_block_w_free(qd_block_w *w) {
    if (!w) return;
    for (int l = 0; w->w && w->b && l < w->nlin; l++) {
        qd_buf_free(w->w[l]);
        qd_buf_free(w->b[l]);
    }
    free(w->w), free(w->b), free(w->n_out), free(w->n_in), free(w->lin);
    w->w = w->b = NULL;
    w->n_out = w->n_in = NULL;
    w->lin = NULL;
    w->nlin = 0;
    qd_buf_free(w->ln_in), qd_buf_free(w->ln_post), qd_buf_free(w->q_norm), qd_buf_free(w->k_norm);
    qd_buf_free(w->q_a_norm), qd_buf_free(w->kv_a_norm), qd_buf_free(w->e_bias);
    w->ln_in = w->ln_post = w->q_norm = w->k_norm = w->q_a_norm = w->kv_a_norm = w->e_bias = NULL;
}

static const qd_st_tensor *embed_of(const qd_model *m) { return qd_ckpt_find(m->ck, "model.embed_tokens.weight"); }

qd_status qd_model_head_load(qd_backend_t be, const qd_model *m, int with_lm_head, qd_head *out) {
    memset(out, 0, sizeof *out);
    out->m = m;
    const qd_model_cfg *cfg = &m->cfg;
    const qd_checkpoint *ck = m->ck;
    const qd_st_tensor *embed = embed_of(m);
    if (!embed) return qd_fail(QD_ERR_FORMAT, "%s: tensor 'model.embed_tokens.weight' is missing", ck->dir);
    if (embed->ndim != 2 || embed->shape[0] != cfg->vocab || embed->shape[1] != cfg->hidden)
        return qd_fail(QD_ERR_FORMAT, "%s: 'model.embed_tokens.weight' is not [%d, %d]", ck->dir, cfg->vocab,
                       cfg->hidden);
    if (!qd_dtype_is_float(embed->dtype))
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: 'model.embed_tokens.weight' has dtype %s", ck->dir,
                       qd_dtype_name(embed->dtype));
    int64_t dh[1] = {cfg->hidden}, dv[2] = {cfg->vocab, cfg->hidden};
    QD_CHECK(load_named(be, ck, "model.norm.weight", 1, dh, &out->norm));
    if (!with_lm_head) return QD_OK;
    /* a checkpoint may carry lm_head.weight even when tied; prefer it when present */
    const char *name = qd_ckpt_find(ck, "lm_head.weight") || !cfg->tie_embed ? "lm_head.weight"
                                                                              : "model.embed_tokens.weight";
    qd_status st = load_named(be, ck, name, 2, dv, &out->lm_head);
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
    const qd_model_cfg *cfg = &h->m->cfg;
    const qd_checkpoint *ck = h->m->ck;
    const qd_st_tensor *embed = embed_of(h->m);
    if (!embed) return qd_fail(QD_ERR_INTERNAL, "%s: embedding used before qd_model_head_load", ck->dir);
    size_t H = (size_t)cfg->hidden, esz = qd_dtype_bits(embed->dtype) / 8;
    const unsigned char *data = qd_ckpt_data(ck, embed);
    if (!data) return qd_fail(QD_ERR_INTERNAL, "%s: checkpoint opened without its data", ck->dir);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab)
            return qd_fail(QD_ERR_FORMAT, "token id %d at position %zu is outside the vocabulary (%d)", ids[i], i,
                           cfg->vocab);
    /* rows gathered in the checkpoint's dtype and converted by the upload (exact: bf16/f16 -> fp32), in
     * chunks: half the host work and transfer of fp32 rows for bf16 models, and a bounded buffer */
    size_t chunk = n < 8192 ? n : 8192;
    unsigned char *rows = malloc(chunk * H * esz + 1);
    if (!rows) return qd_fail(QD_ERR_NOMEM, "embedding: out of memory for %zu rows", chunk);
    qd_status st = QD_OK;
    for (size_t r0 = 0; r0 < n && st == QD_OK; r0 += chunk) {
        size_t mm = n - r0 < chunk ? n - r0 : chunk;
        for (size_t i = 0; i < mm; i++) memcpy(rows + i * H * esz, data + (size_t)ids[r0 + i] * H * esz, H * esz);
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(x.buf, x.off + r0 * H), .src = rows,
                                                       .src_dtype = embed->dtype, .n = mm * H});
    }
    free(rows);
    return st;
}
