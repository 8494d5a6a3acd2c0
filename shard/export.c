/* SPDX-License-Identifier: MIT
 * export.c - the export driver (contract in qd-export.h): plan every Linear, refuse what the format
 * cannot express before writing, list the tensors (export-tensors.c), write them with a pool of
 * threads (export-write.c) into the atomic output directory, then the configs. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export-internal.h"
#include "qd-check.h"
#include "qd-fs.h"
#include "qd-log.h"
#include "qd-meta-files.h"
#include "qd-st-writer.h"

static const char *format_names[] = {"gptq", "gptq_v2", "awq", "compressed-tensors", "fake"};

qd_status qd_export_format_parse(const char *s, qd_export_format *out) {
    for (int i = 0; i < (int)(sizeof format_names / sizeof *format_names); i++)
        if (s && strcmp(s, format_names[i]) == 0) {
            *out = (qd_export_format)i;
            return QD_OK;
        }
    return qd_fail(QD_ERR_USAGE, "export: unknown format '%s'; expected gptq, gptq_v2, awq, compressed-tensors or fake",
                   s ? s : "");
}

const char *qd_export_format_name(qd_export_format f) { return format_names[f]; }

static int is_gptq(qd_export_format f) { return f == QD_EXPORT_GPTQ || f == QD_EXPORT_GPTQ_V2; }

/* scheme-level rule shared by qd_export_check_scheme and the per-layer plan; who = "" or " (module X)" */
static qd_status scheme_ok(qd_export_format f, int ct_naive, int bits, int gs, int sym, int nonseq, const char *who) {
    const char *fmt = format_names[f];
    if (is_gptq(f) && bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return qd_fail(QD_ERR_UNSUPPORTED, "export: %s cannot store %d-bit weights%s; GPTQ stores 2/3/4/8 bits, "
                       "compressed-tensors 2/4/8", fmt, bits, who);
    if (f == QD_EXPORT_AWQ) {
        if (bits != 4)
            return qd_fail(QD_ERR_UNSUPPORTED, "export: awq (GEMM) stores 4-bit weights only, not %d-bit%s; use "
                           "--format gptq (2/3/4/8 bits) or compressed-tensors (2/4/8 bits)", bits, who);
        if (sym)
            return qd_fail(QD_ERR_UNSUPPORTED, "export: awq needs a zero point (asymmetric quantization)%s; use "
                           "--asym, or --format gptq / compressed-tensors for symmetric weights", who);
        if (gs <= 0)
            return qd_fail(QD_ERR_UNSUPPORTED, "export: awq needs a positive group size, not %d%s; use "
                           "--format gptq or compressed-tensors for per-channel (-1) scales", gs, who);
        if (nonseq)
            return qd_fail(QD_ERR_UNSUPPORTED, "export: awq has no g_idx, so it cannot store act-order groups%s; "
                           "use --format gptq or compressed-tensors, or --static-groups", who);
    }
    if (f == QD_EXPORT_CT && !ct_naive && bits != 2 && bits != 4 && bits != 8)
        return qd_fail(QD_ERR_UNSUPPORTED, "export: compressed-tensors pack-quantized cannot store %d-bit weights%s; "
                       "use --format gptq (2/3/4/8 bits)", bits, who);
    if (f == QD_EXPORT_CT && nonseq)
        return qd_fail(QD_ERR_UNSUPPORTED, "export: compressed-tensors no longer loads act-order groups (actorder "
                       "'group' with weight_g_idx was removed in compressed-tensors 0.20)%s; use --format gptq "
                       "(desc_act) or quantize with --static-groups", who);
    if (f == QD_EXPORT_CT && ct_naive && (bits < 2 || bits > 8))
        return qd_fail(QD_ERR_UNSUPPORTED, "export: compressed-tensors naive-quantized holds 2..8-bit weights, "
                       "not %d%s", bits, who);
    return QD_OK;
}

qd_status qd_export_check_scheme(qd_export_format f, int ct_naive, int bits, int group_size, int sym,
                                 int nonseq_g_idx) {
    return scheme_ok(f, ct_naive, bits, group_size, sym, nonseq_g_idx, "");
}

qd_status qd_export_check_module_scheme(qd_export_format f, int ct_naive, int bits, int group_size, int sym,
                                        int nonseq_g_idx, const char *who) {
    return scheme_ok(f, ct_naive, bits, group_size, sym, nonseq_g_idx, who ? who : "");
}

qd_status qd_export_check_qscheme(qd_export_format f, qd_scheme scheme, const char *who) {
    if (scheme == QD_SCHEME_WNA16 || f == QD_EXPORT_CT || f == QD_EXPORT_FAKE) return QD_OK;
    return qd_fail(QD_ERR_USAGE, "export: %s cannot store scheme %s%s (it holds integer weight-only checkpoints); use "
                   "--format compressed-tensors", format_names[f], qd_scheme_name(scheme), who ? who : "");
}

uint64_t qd_export_linear_bytes(qd_export_format f, int ct_naive, int N, int K, int bits, int group_size, int sym,
                                int with_g_idx, unsigned scale_bytes) {
    uint64_t G = group_size > 0 ? (uint64_t)(K + group_size - 1) / group_size : 1;
    uint64_t n = (uint64_t)N, k = (uint64_t)K, b = (uint64_t)bits;
    if (f == QD_EXPORT_CT) {
        uint64_t pf = 32 / b, w = ct_naive ? n * k : n * ((k + pf - 1) / pf) * 4;
        uint64_t z = sym ? 0 : ct_naive ? n * G : ((n + pf - 1) / pf) * G * 4;
        return w + z + n * G * scale_bytes + 16 + (with_g_idx ? 4 * k : 0);
    }
    if (f == QD_EXPORT_AWQ) return k * n / 2 + G * n / 2 + G * n * 2;
    if (f == QD_EXPORT_FAKE) return n * k * 4 + n * k + 8 * G * n + 4 * k; /* f32 weight, u8 codes, f32/i32 groups */
    return k * b / 8 * n + G * n * b / 8 + G * n * 2 + 4 * k;
}

qd_status qd_export_check_space(const char *out_dir, uint64_t need) {
    uint64_t avail;
    QD_CHECK(qd_disk_free(out_dir, &avail));
    uint64_t want = need + need / 100 + (1u << 20);
    if (want > avail)
        return qd_fail(QD_ERR_NOSPACE, "export: %s needs about %.3f GB (%llu bytes) but only %.3f GB (%llu bytes) "
                       "are free there", out_dir, want / 1e9, (unsigned long long)want, avail / 1e9,
                       (unsigned long long)avail);
    return QD_OK;
}

static qd_status write_json(const char *dir, const char *name, const cJSON *j) {
    char path[4400];
    QD_CHECK(qd_path_join(path, sizeof path, dir, name));
    char *text = cJSON_Print(j);
    if (!text) return qd_fail(QD_ERR_NOMEM, "export: out of memory printing %s", name);
    size_t len = strlen(text);
    text[len] = '\n';
    qd_status st = qd_write_file_atomic(path, text, len + 1);
    free(text);
    return st;
}

/* meta_dir/config.json (its path into path), a JSON object */
static qd_status read_config(const char *meta_dir, char *path, size_t cap, cJSON **out) {
    QD_CHECK(qd_path_join(path, cap, meta_dir, "config.json"));
    char *text;
    size_t len;
    QD_CHECK(qd_read_file(path, 16u << 20, &text, &len));
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return qd_fail(QD_ERR_FORMAT, "%s: not a JSON object", path);
    }
    *out = cfg;
    return QD_OK;
}

/* MoE configs hold float fields that transformers' config classes type-check (router_jitter_noise:
 * float); cJSON prints a whole double without its ".0", so those are written raw as "0.0". */
static void keep_floats(cJSON *cfg) {
    static const char *const keys[] = {"router_jitter_noise", "router_aux_loss_coef"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, keys[i]);
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long long)v->valuedouble || fabs(v->valuedouble) > 1e15)
            continue;
        char raw[32];
        snprintf(raw, sizeof raw, "%.1f", v->valuedouble);
        cJSON *r = cJSON_CreateRaw(raw);
        if (r) cJSON_ReplaceItemInObjectCaseSensitive(cfg, keys[i], r);
    }
}

qd_status qd_export_drop_source_quant_config(const char *meta_dir, const char *out) {
    char path[4400];
    cJSON *cfg = NULL;
    QD_CHECK(read_config(meta_dir, path, sizeof path, &cfg));
    qd_status st = QD_OK;
    if (cJSON_GetObjectItemCaseSensitive(cfg, "quantization_config")) {
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
        keep_floats(cfg);
        st = write_json(out, "config.json", cfg);
    }
    cJSON_Delete(cfg);
    return st;
}

static qd_status write_configs(const qd_xplan *p, const char *meta_dir, const char *out) {
    char path[4400];
    cJSON *cfg = NULL;
    QD_CHECK(read_config(meta_dir, path, sizeof path, &cfg));
    keep_floats(cfg);
    cJSON *q;
    qd_status st = qd_export_quant_config(p, &q);
    if (st == QD_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
        if (p->lm_head_quant && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings")))
            cJSON_ReplaceItemInObjectCaseSensitive(cfg, "tie_word_embeddings", cJSON_CreateFalse());
        cJSON *qcopy = cJSON_Duplicate(q, 1);
        cJSON_AddItemToObject(cfg, "quantization_config", q);
        st = write_json(out, "config.json", cfg);
        if (st == QD_OK && is_gptq(p->fmt)) st = write_json(out, "quantize_config.json", qcopy);
        cJSON_Delete(qcopy);
    }
    cJSON_Delete(cfg);
    return st;
}

/* torch_dtype (or dtype) of config.json: F32 when absent */
static qd_status model_dtype_of(const char *meta_dir, qd_dtype *out) {
    char path[4400];
    cJSON *cfg = NULL;
    QD_CHECK(read_config(meta_dir, path, sizeof path, &cfg));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "torch_dtype");
    if (!cJSON_IsString(v)) v = cJSON_GetObjectItemCaseSensitive(cfg, "dtype");
    *out = QD_DT_F32;
    if (cJSON_IsString(v)) {
        if (strcmp(v->valuestring, "bfloat16") == 0) *out = QD_DT_BF16;
        else if (strcmp(v->valuestring, "float16") == 0) *out = QD_DT_F16;
        else if (strcmp(v->valuestring, "float32") == 0) *out = QD_DT_F32;
        else {
            cJSON_Delete(cfg);
            return qd_fail(QD_ERR_UNSUPPORTED, "%s: torch_dtype '%s' is not one qdist exports (bfloat16, float16, "
                           "float32)", path, v->valuestring);
        }
    }
    cJSON_Delete(cfg);
    return QD_OK;
}

/* ---- driver ------------------------------------------------------------------------------------ */

qd_status qd_export_prepare(const qd_export_opts *o, const qd_qsource *src, const qd_qlinear *heads, const int *nonseq,
                            qd_xplan *p, qd_xlist *list, uint64_t *need) {
    memset(p, 0, sizeof *p);
    memset(list, 0, sizeof *list);
    if (!o->out_dir || !o->out_dir[0]) return qd_fail(QD_ERR_USAGE, "export: no output directory");
    if (o->format == QD_EXPORT_FAKE)
        return qd_fail(QD_ERR_INTERNAL, "export: the fake format is written by qd_export_fake, not qd_export_run");
    QD_CHECK(qd_outdir_check(o->out_dir, o->overwrite));
    qd_outdir_clean_stale(o->out_dir);
    const char *meta = src->iface->meta_dir(src->ctx);
    qd_dtype model_dtype;
    QD_CHECK(model_dtype_of(meta, &model_dtype));
    QD_CHECK(qd_meta_files_copy(meta, NULL, NULL)); /* a file that will be refused: before any work */
    p->fmt = o->format;
    p->ct_naive = o->ct_naive;
    p->model_dtype = model_dtype;
    p->scale_dtype = o->format == QD_EXPORT_CT ? p->model_dtype : QD_DT_F16;
    src->iface->run(src->ctx, &p->run);
    QD_CHECK(qd_export_kv_check(&p->run, o->format));
    qd_status st = qd_export_plan(o, src, heads, nonseq, p);
    if (st == QD_OK) st = qd_export_list(p, src, list);
    *need = 1u << 20; /* configs, tokenizer, index */
    for (size_t i = 0; i < list->n; i++) *need += list->t[i].nbytes;
    if (st == QD_OK) st = qd_export_check_space(o->out_dir, *need);
    if (st != QD_OK) {
        qd_export_list_free(list);
        free(p->layers);
        p->layers = NULL;
    }
    return st;
}

qd_status qd_export_conclude(const qd_export_opts *o, const qd_qsource *src, const qd_xplan *p, qd_outdir *od,
                             qd_status st, const qd_xstats *stats, uint64_t need) {
    const char *meta = src->iface->meta_dir(src->ctx), *tmp = qd_outdir_path(od);
    if (st == QD_OK) st = qd_meta_files_copy(meta, tmp, NULL);
    if (st == QD_OK) st = write_configs(p, meta, tmp);
    if (st == QD_OK) st = qd_outdir_commit(od);
    else qd_outdir_abort(od);
    if (st == QD_OK && stats->scales_inexact)
        qd_warn("export: %zu scales were not exactly representable in %s (largest relative change %.3g): the "
                "exported weights differ slightly from the fake-quantised ones", stats->scales_inexact,
                qd_dtype_name(p->scale_dtype), stats->scales_max_rel);
    if (st == QD_OK && o->verify) st = qd_export_verify(o->out_dir, src);
    if (st == QD_OK) {
        size_t nconv = 0;
        for (size_t i = 0; i < p->n; i++) nconv += p->layers[i].converted;
        qd_info("export: wrote %s (%s, %zu quantized Linear modules, %.1f MB)", o->out_dir, format_names[o->format],
                nconv, need / 1e6);
    }
    return st;
}

qd_status qd_export_run(const qd_export_opts *o, const qd_qsource *src) {
    qd_xplan p;
    qd_xlist list;
    uint64_t need;
    QD_CHECK(qd_export_prepare(o, src, NULL, NULL, &p, &list, &need));
    qd_outdir *od = NULL;
    qd_status st = qd_outdir_begin(o->out_dir, o->overwrite, &od);
    if (st != QD_OK) {
        qd_export_list_free(&list);
        free(p.layers);
        return st;
    }
    qd_xstats stats = {0};
    st = qd_export_write(&p, src, &list, qd_outdir_path(od),
                         o->max_shard_bytes ? o->max_shard_bytes : QD_DEFAULT_MAX_SHARD_BYTES, &stats);
    qd_export_list_free(&list);
    st = qd_export_conclude(o, src, &p, od, st, &stats, need);
    free(p.layers);
    return st;
}
