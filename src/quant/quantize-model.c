/* SPDX-License-Identifier: MIT
 * quantize-model.c - the single-process model loop: embed the calibration ids, quantize block after
 * block (qd_quantize_block), stream each finished block into the fake-quant output, write the report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-log.h"
#include "qd-quantize-model.h"
#include "qd-st-writer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    qd_backend_t be;
    const qd_quantize_model_opts *o;
    const qd_model_cfg *cfg;
    qd_checkpoint *ck;
    qd_stw *stw;
    cJSON *modules;
    size_t nquant, nskip, nfallback;
    double loss_sum, quant_seconds;
} run_state;

static qd_status add_raw(run_state *r, const qd_st_tensor *t) {
    const void *data = qd_ckpt_data(r->ck, t);
    if (!data) return qd_fail(QD_ERR_INTERNAL, "%s: checkpoint opened without data", r->ck->dir);
    return qd_stw_add(r->stw, t->name, t->dtype, t->ndim, t->shape, data, (size_t)t->nbytes);
}

/* a tensor held on the device, written back in its source dtype */
static qd_status add_device(run_state *r, const qd_st_tensor *t, qd_buf_t b) {
    size_t n = (size_t)t->numel;
    float *f = malloc(n * sizeof *f);
    void *raw = malloc((size_t)t->nbytes + 1);
    qd_status st = QD_OK;
    if (!f || !raw) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory writing '%s'", r->o->output_dir, t->name);
        goto done;
    }
    QD_CHECK_GOTO(qd_be_download(r->be, &(struct qd_download_args){.src = QD_REF(b, 0), .dst = f, .n = n}), st, done);
    qd_from_f32(t->dtype, f, raw, n);
    st = qd_stw_add(r->stw, t->name, t->dtype, t->ndim, t->shape, raw, (size_t)t->nbytes);
done:
    free(f), free(raw);
    return st;
}

static qd_status add_quantized(run_state *r, const qd_st_tensor *t, qd_buf_t W, const qd_qresult *q) {
    const qd_qlinear *l = &q->q;
    size_t N = (size_t)l->N, K = (size_t)l->K, G = (size_t)l->G;
    float *f = malloc(N * K * sizeof *f);
    if (!f) return qd_fail(QD_ERR_NOMEM, "%s: out of memory writing '%s'", r->o->output_dir, t->name);
    qd_status st;
    QD_CHECK_GOTO(qd_be_download(r->be, &(struct qd_download_args){.src = QD_REF(W, 0), .dst = f, .n = N * K}), st, done);
    int64_t nk[2] = {(int64_t)N, (int64_t)K}, gn[2] = {(int64_t)G, (int64_t)N}, k1[1] = {(int64_t)K};
    char name[QD_QNAME_MAX + 16];
    QD_CHECK_GOTO(qd_stw_add(r->stw, t->name, QD_DT_F32, 2, nk, f, N * K * 4), st, done);
    snprintf(name, sizeof name, "%s.qd_codes", l->name);
    QD_CHECK_GOTO(qd_stw_add(r->stw, name, QD_DT_U8, 2, nk, l->codes, N * K), st, done);
    snprintf(name, sizeof name, "%s.qd_scales", l->name);
    QD_CHECK_GOTO(qd_stw_add(r->stw, name, QD_DT_F32, 2, gn, l->scales, G * N * 4), st, done);
    snprintf(name, sizeof name, "%s.qd_zeros", l->name);
    QD_CHECK_GOTO(qd_stw_add(r->stw, name, QD_DT_I32, 2, gn, l->zeros, G * N * 4), st, done);
    snprintf(name, sizeof name, "%s.qd_g_idx", l->name);
    QD_CHECK_GOTO(qd_stw_add(r->stw, name, QD_DT_I32, 1, k1, l->g_idx, K * 4), st, done);
done:
    free(f);
    return st;
}

static void report_module(run_state *r, const qd_qctx *ctx, int block, qd_lin l, const qd_qresult *q) {
    qd_qspec s;
    char name[128];
    qd_qctx_spec(ctx, block, l, &s, name, sizeof name);
    cJSON *m = cJSON_CreateObject();
    if (s.skip || !q->q.codes) {
        cJSON_AddStringToObject(m, "method", "none");
        cJSON_AddBoolToObject(m, "skipped", 1);
        r->nskip++;
    } else {
        cJSON_AddStringToObject(m, "method", q->q.method);
        cJSON_AddNumberToObject(m, "bits", q->q.bits);
        cJSON_AddNumberToObject(m, "group_size", q->q.group_size);
        cJSON_AddBoolToObject(m, "sym", q->q.sym);
        cJSON_AddBoolToObject(m, "act_order", s.method == QD_METHOD_GPTQ && s.act_order);
        cJSON_AddBoolToObject(m, "static_groups", s.method == QD_METHOD_GPTQ && s.static_groups);
        cJSON_AddBoolToObject(m, "mse", s.method != QD_METHOD_AWQ && s.mse);
        cJSON_AddNumberToObject(m, "N", q->q.N);
        cJSON_AddNumberToObject(m, "K", q->q.K);
        cJSON_AddNumberToObject(m, "loss", q->s.loss);
        if (q->s.damp >= 0) cJSON_AddNumberToObject(m, "damp", q->s.damp);
        else cJSON_AddNullToObject(m, "damp");
        if (q->s.fallback[0]) cJSON_AddStringToObject(m, "fallback", q->s.fallback);
        else cJSON_AddNullToObject(m, "fallback");
        cJSON_AddNumberToObject(m, "calib_tokens", (double)q->s.calib_tokens);
        cJSON_AddNumberToObject(m, "seconds", q->s.seconds);
        r->nquant++;
        r->nfallback += q->s.fallback[0] != 0;
        r->loss_sum += q->s.loss;
        r->quant_seconds += q->s.seconds;
    }
    cJSON_AddItemToObject(r->modules, name, m);
}

/* write block b's tensors: quantized Linears with their codes, the others from the device copy */
static qd_status write_block(run_state *r, const qd_block_w *w, const qd_qresult *res) {
    char name[256];
    for (size_t i = 0; i < r->ck->ntensors; i++) {
        const qd_st_tensor *t = r->ck->tensors[i];
        int block;
        char module[192];
        if (qd_model_classify(r->cfg, t->name, &block, module, sizeof module) != QD_PART_BLOCK || block != w->index)
            continue;
        qd_buf_t dev = NULL;
        int qlin = -1;
        for (int l = 0; l < QD_NLIN; l++) {
            snprintf(name, sizeof name, "%s.weight", qd_lin_name((qd_lin)l));
            if (strcmp(module, name) == 0) {
                dev = w->w[l];
                if (res[l].q.codes) qlin = l;
            }
            snprintf(name, sizeof name, "%s.bias", qd_lin_name((qd_lin)l));
            if (strcmp(module, name) == 0) dev = w->b[l];
        }
        if (strcmp(module, "input_layernorm.weight") == 0) dev = w->ln_in;
        if (strcmp(module, "post_attention_layernorm.weight") == 0) dev = w->ln_post;
        if (strcmp(module, "self_attn.q_norm.weight") == 0) dev = w->q_norm;
        if (strcmp(module, "self_attn.k_norm.weight") == 0) dev = w->k_norm;
        if (qlin >= 0)
            QD_CHECK(add_quantized(r, t, dev, &res[qlin]));
        else if (dev && qd_dtype_is_float(t->dtype) && qd_buf_len(dev) == t->numel)
            QD_CHECK(add_device(r, t, dev));
        else
            QD_CHECK(add_raw(r, t));
    }
    return QD_OK;
}

static qd_status write_report(run_state *r, const char *dir, double wall) {
    const qd_quantize_model_opts *o = r->o;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "qdist_version", QD_VERSION);
    cJSON_AddStringToObject(root, "model", o->model_dir);
    cJSON_AddStringToObject(root, "format", "fake");
    cJSON *set = qd_quantize_settings_json(root, &o->q);
    if (!set) {
        cJSON_Delete(root);
        return qd_fail(QD_ERR_NOMEM, "report: out of memory");
    }
    cJSON_AddBoolToObject(set, "lm_head", 0);
    if (o->recipe_path) cJSON_AddStringToObject(set, "recipe", o->recipe_path);
    else cJSON_AddNullToObject(set, "recipe");
    cJSON *cal = cJSON_AddObjectToObject(root, "calibration");
    if (o->calib_ids) {
        cJSON_AddStringToObject(cal, "path", o->calib_path ? o->calib_path : "");
        cJSON_AddNumberToObject(cal, "nsamples", (double)o->q.nseq);
        cJSON_AddNumberToObject(cal, "seqlen", (double)o->q.seq_len);
        cJSON_AddStringToObject(cal, "mode", o->calib_mode ? o->calib_mode : "");
        cJSON_AddNumberToObject(cal, "seed", (double)o->seed);
        cJSON_AddNumberToObject(cal, "tokens", (double)(o->q.nseq * o->q.seq_len));
        if (o->calib_sha256) cJSON_AddStringToObject(cal, "sha256", o->calib_sha256);
    } else {
        cJSON_AddNumberToObject(cal, "tokens", 0);
    }
    cJSON_AddItemToObject(root, "modules", r->modules);
    r->modules = NULL;
    cJSON *tot = cJSON_AddObjectToObject(root, "totals");
    cJSON_AddNumberToObject(tot, "quantized", (double)r->nquant);
    cJSON_AddNumberToObject(tot, "skipped", (double)r->nskip);
    cJSON_AddNumberToObject(tot, "fallbacks", (double)r->nfallback);
    cJSON_AddNumberToObject(tot, "loss", r->loss_sum);
    cJSON_AddNumberToObject(tot, "quant_seconds", r->quant_seconds);
    cJSON_AddNumberToObject(tot, "seconds", wall);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return qd_fail(QD_ERR_NOMEM, "%s: out of memory writing the report", dir);
    char path[4096];
    qd_status st = qd_path_join(path, sizeof path, dir, "qdist_report.json");
    if (st == QD_OK) st = qd_write_file_atomic(path, text, strlen(text));
    cJSON_free(text);
    return st;
}

qd_status qd_quantize_model(qd_backend_t be, const qd_quantize_model_opts *o) {
    double t0 = now_s();
    qd_model_cfg cfg;
    QD_CHECK(qd_model_cfg_load(o->model_dir, &cfg));
    run_state r = {.be = be, .o = o, .cfg = &cfg};
    qd_outdir *od = NULL;
    qd_head head = {0};
    qd_qctx *ctx = NULL;
    qd_buf_t in = NULL, out = NULL;
    qd_block_w w = {0};
    qd_qresult res[QD_NLIN];
    memset(res, 0, sizeof res);
    qd_status st;
    r.modules = cJSON_CreateObject();
    if (!r.modules) return qd_fail(QD_ERR_NOMEM, "quantize: out of memory");
    QD_CHECK_GOTO(qd_ckpt_open(o->model_dir, 1, &r.ck), st, fail);
    QD_CHECK_GOTO(qd_model_check_ckpt(&cfg, r.ck, 0), st, fail);
    if (cfg.quantized) {
        st = qd_fail(QD_ERR_UNSUPPORTED, "%s: the model is already quantized (%s)", o->model_dir, cfg.quant_method);
        goto fail;
    }
    QD_CHECK_GOTO(qd_qctx_create(be, &cfg, &o->q, &ctx), st, fail);
    QD_CHECK_GOTO(qd_outdir_begin(o->output_dir, o->overwrite, &od), st, fail);
    QD_CHECK_GOTO(qd_stw_open(qd_outdir_path(od), "model", QD_DEFAULT_MAX_SHARD_BYTES, &r.stw), st, fail);
    size_t rows = o->calib_ids ? o->q.nseq * o->q.seq_len : 0, H = (size_t)cfg.hidden;
    if (rows) {
        QD_CHECK_GOTO(qd_head_load(be, &cfg, r.ck, 0, &head), st, fail);
        QD_CHECK_GOTO(qd_buf_alloc(be, rows * H, &in), st, fail);
        QD_CHECK_GOTO(qd_buf_alloc(be, rows * H, &out), st, fail);
        QD_CHECK_GOTO(qd_embed(be, &head, o->calib_ids, rows, QD_REF(in, 0)), st, fail);
    }
    for (int b = 0; b < cfg.nlayers; b++) {
        double tb = now_s();
        QD_CHECK_GOTO(qd_block_w_load(be, &cfg, r.ck, b, &w), st, fail);
        QD_CHECK_GOTO(qd_quantize_block(ctx, &w, in, out, res), st, fail);
        for (int l = 0; l < QD_NLIN; l++) /* an overflowing scale is refused when its block is done */
            if (res[l].q.codes) QD_CHECK_GOTO(qd_qlinear_check_scales(&res[l].q, o->q.scale_dtype, "--scale-dtype"), st, fail);
        QD_CHECK_GOTO(write_block(&r, &w, res), st, fail);
        for (int l = 0; l < QD_NLIN; l++) {
            report_module(&r, ctx, b, (qd_lin)l, &res[l]);
            qd_qresult_free(&res[l]);
        }
        qd_block_w_free(&w);
        qd_buf_t t = in;
        in = out, out = t;
        qd_info("block %d/%d quantized in %.1f s", b + 1, cfg.nlayers, now_s() - tb);
    }
    for (size_t i = 0; i < r.ck->ntensors; i++) {
        const qd_st_tensor *t = r.ck->tensors[i];
        if (qd_model_classify(&cfg, t->name, NULL, NULL, 0) != QD_PART_BLOCK) QD_CHECK_GOTO(add_raw(&r, t), st, fail);
    }
    st = qd_stw_finish(r.stw);
    r.stw = NULL;
    if (st != QD_OK) goto fail;
    QD_CHECK_GOTO(qd_model_copy_meta_files(o->model_dir, qd_outdir_path(od)), st, fail);
    QD_CHECK_GOTO(write_report(&r, qd_outdir_path(od), now_s() - t0), st, fail);
    st = qd_outdir_commit(od);
    od = NULL;
    if (st == QD_OK)
        qd_info("quantize: %zu modules quantized (%zu fallbacks) in %.1f s -> %s", r.nquant, r.nfallback, now_s() - t0,
                o->output_dir);
fail:
    for (int l = 0; l < QD_NLIN; l++) qd_qresult_free(&res[l]);
    qd_block_w_free(&w);
    if (r.stw) qd_stw_abort(r.stw);
    if (od) qd_outdir_abort(od);
    cJSON_Delete(r.modules);
    qd_head_free(&head);
    qd_buf_free(in), qd_buf_free(out);
    qd_qctx_free(ctx);
    qd_ckpt_close(r.ck);
    return st;
}
