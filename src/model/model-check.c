/* SPDX-License-Identifier: MIT
 * model-check.c - does the checkpoint hold the model config.json describes (contract in
 * qd-model-ckpt.h)? What a block holds comes from its architecture's table (qd-arch.h).
 *
 * Run before any work so that a mismatch is reported at once, naming the file and the config fields,
 * instead of when its block is reached (after the earlier blocks were quantized), or as a misleading
 * "missing" error for a tensor that is there with another dtype.
 */
#include "qd-arch.h"
#include "qd-model-ckpt.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-qformat-fp8.h"
#include "qd-qformat-read.h"

/* the one line: an error, or (warn) a warning and a status the caller may ignore */
static qd_status bad(int warn, const char *fmt, ...) QD_PRINTF(2, 3);
static qd_status bad(int warn, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!warn) return qd_fail(QD_ERR_FORMAT, "%s", msg);
    qd_warn("%s", msg);
    return QD_ERR_FORMAT;
}

static const char *file_of(const qd_checkpoint *ck, const qd_st_tensor *t) {
    if (t && t->file_index >= 0 && t->file_index < ck->nfiles) {
        const char *p = ck->files[t->file_index]->path, *s = strrchr(p, '/');
        return s ? s + 1 : p;
    }
    return ck->sharded ? "model.safetensors.index.json" : "model.safetensors";
}

static void shape_text(const qd_st_tensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* One expected tensor: its dims and the config fields they come from ("intermediate_size=128, ..."). */
typedef struct {
    int ndim;
    int64_t dims[2];
    const char *fields;
} want;

static qd_status check_tensor(int warn, const qd_checkpoint *ck, const char *name, const want *w) {
    const qd_st_tensor *t = qd_ckpt_find(ck, name);
    if (!t)
        return bad(warn, "%s/%s: tensor %s is missing; config.json (%s) expects it", ck->dir,
                   file_of(ck, NULL), name, w->fields);
    if (!qd_dtype_is_float(t->dtype))
        return bad(warn, "%s/%s: %s has dtype %s; a float dtype (F32, BF16, F16) is expected", ck->dir,
                       file_of(ck, t), name, qd_dtype_name(t->dtype));
    int ok = t->ndim == w->ndim;
    for (int i = 0; ok && i < w->ndim; i++) ok = t->shape[i] == w->dims[i];
    if (!ok) {
        char got[160];
        shape_text(t, got, sizeof got);
        if (w->ndim == 2)
            return bad(warn, "%s/%s: %s has shape %s, config.json (%s) expects [%lld,%lld]", ck->dir,
                           file_of(ck, t), name, got, w->fields, (long long)w->dims[0], (long long)w->dims[1]);
        return bad(warn, "%s/%s: %s has shape %s, config.json (%s) expects [%lld]", ck->dir,
                       file_of(ck, t), name, got, w->fields, (long long)w->dims[0]);
    }
    return QD_OK;
}

/* A Linear of a quantized checkpoint: any stored form (plain float weight, GPTQ/AWQ qweight,
 * compressed-tensors weight_packed or int8 weight); its shape is checked by the format reader. */
static qd_status check_linear(int warn, const qd_model_cfg *cfg, const qd_checkpoint *ck, const qd_qformat *qf,
                              const char *prefix, const want *w) {
    char name[320];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const qd_st_tensor *t = qd_ckpt_find(ck, name);
    /* a compressed-tensors config group must describe the tensors it targets (headers only) */
    if (qf) QD_CHECK(qd_qformat_check_linear(qf, ck, prefix));
    if (cfg->fp8_source && t && t->dtype == QD_DT_F8_E4M3) { /* else a Linear kept in a float dtype */
        int64_t N, K;
        /* compressed-tensors: each Linear has its own group's layout (a recipe mixes per-channel and block
         * groups); quant_method fp8: one weight_block_size for the model */
        if (qf && qd_qformat_kind_of(qf) == QD_QF_CT) QD_CHECK(qd_qformat_read_linear(qf, ck, prefix, NULL, &N, &K, NULL));
        else QD_CHECK(qd_fp8_linear_check(ck, prefix, cfg->fp8_block, &N, &K));
        if (N != w->dims[0] || K != w->dims[1])
            return bad(warn, "%s/%s: %s has shape [%lld,%lld], config.json (%s) expects [%lld,%lld]", ck->dir,
                       file_of(ck, t), name, (long long)N, (long long)K, w->fields, (long long)w->dims[0],
                       (long long)w->dims[1]);
        return QD_OK;
    }
    if (cfg->quantized) {
        if (t && qd_dtype_is_float(t->dtype)) return check_tensor(warn, ck, name, w);
        if (t) return QD_OK;
        static const char *const forms[] = {".qweight", ".weight_packed"};
        for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
            snprintf(name, sizeof name, "%s%s", prefix, forms[i]);
            if (qd_ckpt_find(ck, name)) return QD_OK;
        }
        return bad(warn, "%s/%s: Linear %s has no weight (.weight, .qweight or .weight_packed); "
                       "config.json (num_hidden_layers=%d) expects it", ck->dir, file_of(ck, NULL), prefix,
                       cfg->nlayers);
    }
    if (!t) {
        snprintf(name, sizeof name, "%s.qweight", prefix);
        const qd_st_tensor *q = qd_ckpt_find(ck, name);
        if (!q) {
            snprintf(name, sizeof name, "%s.weight_packed", prefix);
            q = qd_ckpt_find(ck, name);
        }
        if (q)
            return bad(warn, "%s/%s: %s is stored quantized but config.json has no quantization_config",
                           ck->dir, file_of(ck, q), name);
        snprintf(name, sizeof name, "%s.weight", prefix);
        return check_tensor(warn, ck, name, w);
    }
    if (!qd_dtype_is_float(t->dtype))
        return bad(warn, "%s/%s: %s has dtype %s but config.json has no quantization_config (a float "
                       "dtype is expected)", ck->dir, file_of(ck, t), name, qd_dtype_name(t->dtype));
    return check_tensor(warn, ck, name, w);
}

/* every tensor the architecture's table lists for this config, in the table's order */
static qd_status check_block(int warn, const qd_model_cfg *cfg, const qd_checkpoint *ck, const qd_qformat *qf, int b) {
    const struct qd_arch *a = cfg->arch;
    char name[320], prefix[256], fields[96];
    size_t nt = qd_model_block_tensors(cfg, b, NULL, 0);
    int nl = qd_model_linears(cfg, b, NULL, 0);
    qd_block_tensor_ref *refs = calloc(nt + 1, sizeof *refs);
    qd_linear *lin = calloc((size_t)nl + 1, sizeof *lin);
    qd_status st = refs && lin ? QD_OK : qd_fail(QD_ERR_NOMEM, "block %d: out of memory checking its tensors", b);
    if (st == QD_OK) {
        qd_model_block_tensors(cfg, b, refs, nt);
        qd_model_linears(cfg, b, lin, nl);
    }
    for (size_t i = 0; i < nt && st == QD_OK; i++) {
        const qd_block_tensor_ref *bt = &refs[i];
        want w = {1, {0, 0}, fields};
        if (bt->role == QD_T_NORM) {
            const int q = bt->slot == QD_NORM_Q || bt->slot == QD_NORM_K;
            w.dims[0] = qd_model_norm_size(cfg, (qd_norm)bt->slot);
            if (bt->slot >= QD_NORM_Q_A)
                snprintf(fields, sizeof fields, "%s=%lld",
                         bt->slot == QD_NORM_Q_A    ? "q_lora_rank"
                         : bt->slot == QD_NORM_KV_A ? "kv_lora_rank"
                                                    : "n_routed_experts",
                         (long long)w.dims[0]);
            else
                snprintf(fields, sizeof fields, "%s=%d", q ? "head_dim" : "hidden_size", q ? cfg->head_dim : cfg->hidden);
        } else {
            a->linear_shape(cfg, lin[bt->slot].kind, &w.dims[0], &w.dims[1], fields, sizeof fields);
            w.ndim = bt->role == QD_T_LINEAR_W ? 2 : 1;
        }
        if (bt->role == QD_T_LINEAR_W) {
            snprintf(prefix, sizeof prefix, "model.layers.%d.%s", b, lin[bt->slot].module);
            st = check_linear(warn, cfg, ck, qf, prefix, &w);
        } else {
            snprintf(name, sizeof name, "model.layers.%d.%s", b, bt->suffix);
            st = check_tensor(warn, ck, name, &w);
        }
    }
    free(refs), free(lin);
    return st;
}

/* the routed expert a block tensor's name holds ("...experts.<e>.<...>"), else -1 */
static long expert_of(const char *name) {
    const char *at = strstr(name, ".experts.");
    if (!at) return -1;
    char *end;
    long e = strtol(at + 9, &end, 10);
    return end > at + 9 && *end == '.' ? e : -1;
}

qd_status qd_model_check_ckpt(const qd_model_cfg *cfg, const qd_checkpoint *ck, int warn) {
    /* every block the checkpoint holds must be one the config declares, and every expert too: an expert
     * past the config's count is a checkpoint the config undercounts, which a run would quantize without
     * that expert (its tensors passed through as they are) */
    const char *experts = cfg->mla ? "n_routed_experts" : cfg->moe_mixtral ? "num_local_experts" : "num_experts";
    for (size_t i = 0; i < ck->ntensors; i++) {
        int b = -1;
        const qd_st_tensor *t = ck->tensors[i];
        if (qd_model_classify(NULL, t->name, &b, NULL, 0) != QD_PART_BLOCK) continue;
        /* DeepSeek-V3's multi-token prediction blocks follow the decoder's: passed through as they are */
        if (b >= cfg->nlayers + cfg->mtp_layers)
            return bad(warn, "%s/%s: %s belongs to block %d but config.json has num_hidden_layers=%d "
                           "(blocks 0..%d)", ck->dir, file_of(ck, t), t->name, b, cfg->nlayers, cfg->nlayers - 1);
        long e = cfg->moe_experts > 0 ? expert_of(t->name) : -1;
        if (e >= cfg->moe_experts)
            return bad(warn, "%s/%s: %s belongs to expert %ld but config.json has %s=%d (experts 0..%d)", ck->dir,
                       file_of(ck, t), t->name, e, experts, cfg->moe_experts, cfg->moe_experts - 1);
    }
    qd_qformat *qf = NULL; /* opened at the first block, for the Linears' config groups */
    for (int b = 0; b < cfg->nlayers; b++) {
        char name[96];
        /* a whole block absent: say so once, rather than naming its first tensor */
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", b);
        if (!qd_ckpt_find(ck, name)) {
            snprintf(name, sizeof name, "model.layers.%d.", b);
            size_t len = strlen(name);
            int any = 0;
            for (size_t i = 0; i < ck->ntensors && !any; i++) any = strncmp(ck->tensors[i]->name, name, len) == 0;
            if (!any) {
                qd_qformat_close(qf);
                return bad(warn, "%s/%s: no tensors of block %d (model.layers.%d.*) but config.json has "
                               "num_hidden_layers=%d", ck->dir, file_of(ck, NULL), b, b, cfg->nlayers);
            }
        }
        qd_status st = QD_OK;
        if (!qf && (cfg->quantized || cfg->fp8_source)) {
            st = qd_qformat_open(ck->dir, &qf);
            /* a method qdist does not read would leave its tensors to be taken as plain weights: an error in
             * inspect too, as a config group contradicting its tensors is */
            if (st == QD_OK && qd_qformat_kind_of(qf) == QD_QF_OTHER)
                st = qd_fail(QD_ERR_FORMAT, "%s/config.json: quantization_config.quant_method \"%s\" is not one qdist reads "
                               "(gptq, awq, compressed-tensors, fp8)", ck->dir, cfg->quant_method);
        }
        if (st == QD_OK) st = check_block(warn, cfg, ck, qf, b);
        if (st != QD_OK) {
            qd_qformat_close(qf);
            return st;
        }
    }
    qd_qformat_close(qf);
    char f_e[96], f_h[64];
    snprintf(f_e, sizeof f_e, "vocab_size=%d, hidden_size=%d", cfg->vocab, cfg->hidden);
    snprintf(f_h, sizeof f_h, "hidden_size=%d", cfg->hidden);
    const want embed = {2, {cfg->vocab, cfg->hidden}, f_e}, norm = {1, {cfg->hidden, 0}, f_h};
    QD_CHECK(check_tensor(warn, ck, "model.embed_tokens.weight", &embed));
    QD_CHECK(check_tensor(warn, ck, "model.norm.weight", &norm));
    const qd_st_tensor *lm = qd_ckpt_find(ck, "lm_head.weight");
    if (lm && qd_dtype_is_float(lm->dtype)) QD_CHECK(check_tensor(warn, ck, "lm_head.weight", &embed));
    return QD_OK;
}

qd_status qd_model_check_fp8_values(const qd_model_cfg *cfg, const qd_checkpoint *ck) {
    if (!cfg->fp8_source) return QD_OK;
    char prefix[320];
    for (size_t i = 0; i < ck->ntensors; i++) {
        const qd_st_tensor *t = ck->tensors[i];
        size_t len = strlen(t->name);
        if (t->dtype != QD_DT_F8_E4M3 || len <= 7 || len - 7 >= sizeof prefix || strcmp(t->name + len - 7, ".weight"))
            continue;
        snprintf(prefix, sizeof prefix, "%.*s", (int)(len - 7), t->name);
        if (strcmp(cfg->quant_method, "compressed-tensors") == 0) /* its group's layout: checked by the model check */
            QD_CHECK(qd_fp8_ct_scale_values_check(ck, prefix));
        else QD_CHECK(qd_fp8_scale_values_check(ck, prefix, cfg->fp8_block));
    }
    return QD_OK;
}
