/* SPDX-License-Identifier: MIT
 * run-kv.c - --kv-cache in the run: each block's k_scale / v_scale staged beside its Linears (so a
 * resumed run and every export read them back like a norm), and the run settings the export needs.
 *
 * scale = amax / 448 (compressed-tensors' calculate_qparams for a symmetric 8-bit float: the range
 * 448 - (-448) halved), stored in the model's dtype as compressed-tensors initialises k_scale; an amax
 * of 0 gets that dtype's eps, as calculate_qparams replaces a zero scale. Per tensor: the largest head's
 * amax; per KV head ("attn_head"): one scale per head. */
#include "run-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-qsource.h"

void qd_run_qrun_kv(const qd_run_opts *o, const qd_model_cfg *cfg, qd_qrun *run) {
    run->kv_cache = o->q.kv_cache;
    run->kv_heads = cfg->nkv;
    run->kv_dtype = cfg->dtype == QD_DT_BF16 || cfg->dtype == QD_DT_F16 ? cfg->dtype : QD_DT_F32;
}

qd_status qd_run_check_kv(const qd_model_cfg *cfg, const char *format, const char *calib_path) {
    if (strcmp(format, "compressed-tensors") != 0)
        return qd_fail(QD_ERR_USAGE, "--kv-cache: --format %s has no KV-cache scales (vLLM reads k_scale/v_scale only "
                       "with compressed-tensors' kv_cache_scheme): use --format compressed-tensors", format);
    if (!calib_path) return qd_fail(QD_ERR_USAGE, "--kv-cache calibrates the key/value scales: add --calib FILE");
    if (cfg->mla)
        return qd_fail(QD_ERR_UNSUPPORTED, "--kv-cache: DeepSeek-V3 (MLA) is not supported: vLLM's MLA cache holds "
                       "the compressed latent, not the per-head keys/values compressed-tensors calibrates");
    return QD_OK;
}

static float dtype_eps(qd_dtype dt) {
    return dt == QD_DT_BF16 ? 0x1p-7f : dt == QD_DT_F16 ? 0x1p-10f : 0x1p-23f;
}

static qd_status add_scale(qd_staged_block *sb, int b, const char *what, const double *amax, size_t nkv, int per_head,
                           qd_dtype dt) {
    qd_staged_tensor *t = &sb->tensors[sb->ntensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "model.layers.%d.self_attn.%s", b, what);
    size_t n = per_head ? nkv : 1;
    t->ndim = 1;
    t->shape[0] = (int64_t)n;
    t->data = malloc(n * sizeof *t->data);
    if (!t->data) return qd_fail(QD_ERR_NOMEM, "%s: out of memory staging", t->name);
    sb->ntensors++;
    double all = 0;
    for (size_t h = 0; h < nkv; h++) all = amax[h] > all ? amax[h] : all;
    for (size_t i = 0; i < n; i++) {
        double a = per_head ? amax[i] : all;
        if (!(a < 1e30)) /* NaN or overflow: the activations were checked finite, so this is a bug */
            return qd_fail(QD_ERR_INTERNAL, "%s: the observed maximum %g is not finite", t->name, a);
        t->data[i] = a > 0 ? (float)(a / 448.0) : dtype_eps(dt);
    }
    return QD_OK;
}

qd_status qd_run_kv_stage(const qd_run *k, qd_staged_block *sb, int b) {
    if (!k->o->q.kv_cache) return QD_OK;
    const double *amax = qd_qctx_kv_amax(k->ctx);
    if (!amax) return qd_fail(QD_ERR_INTERNAL, "block %d: --kv-cache: the block was not observed", b);
    qd_qrun run;
    qd_run_qrun_kv(k->o, k->cfg, &run);
    size_t nkv = (size_t)k->cfg->nkv;
    int head = k->o->q.kv_cache == QD_KV_FP8_HEAD;
    QD_CHECK(add_scale(sb, b, "k_scale", amax, nkv, head, run.kv_dtype));
    return add_scale(sb, b, "v_scale", amax + nkv, nkv, head, run.kv_dtype);
}
