/* SPDX-License-Identifier: MIT
 * qsource-fake.c - the quantization source backed by a fake-quant directory (see qd-qsource.h). */
#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-json.h"
#include "qd-log.h"
#include "qd-qsource.h"
#include "qd-safetensors.h"

typedef struct fake_layer {
    char name[QD_QNAME_MAX];
    const qd_st_tensor *codes, *scales, *zeros, *g_idx;
    const qd_st_tensor *global; /* nvfp4a16's ".qd_global_scale" (F32 [1]); NULL when absent */
    int bits, group_size, sym; /* -1 when the report does not say */
    int scheme;                /* qd_scheme from the report's "scheme" (absent: wna16), -1 unknown */
    char method[16];
} fake_layer;

typedef struct fake_src {
    char dir[4096];
    qd_checkpoint *ck;
    size_t nlayers;
    fake_layer *layers;
    size_t nplain;
    const qd_st_tensor **plain;
    qd_qrun run;
} fake_src;

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* the four every layer has, then fp8-static's static activation scale (F32 [1]) */
static const char *qd_suffixes[] = {".qd_codes", ".qd_scales", ".qd_zeros", ".qd_g_idx", ".qd_input_scale"};

static long find_layer_idx(const fake_src *f, const char *prefix) {
    for (size_t i = 0; i < f->nlayers; i++)
        if (strcmp(f->layers[i].name, prefix) == 0) return (long)i;
    return -1;
}

static size_t f_n_layers(void *ctx) { return ((fake_src *)ctx)->nlayers; }
static long f_find_layer(void *ctx, const char *prefix) { return find_layer_idx(ctx, prefix); }
static size_t f_n_plain(void *ctx) { return ((fake_src *)ctx)->nplain; }
static const char *f_meta_dir(void *ctx) { return ((fake_src *)ctx)->dir; }
static void f_run(void *ctx, qd_qrun *out) { *out = ((fake_src *)ctx)->run; }

static qd_status f_plain_info(void *ctx, size_t i, qd_plain_info *out) {
    qd_plain_info_of(((fake_src *)ctx)->plain[i], out);
    return QD_OK;
}

static qd_status f_plain_read(void *ctx, size_t i, void *dst) {
    fake_src *f = ctx;
    return qd_ckpt_read_raw(f->ck, f->plain[i], dst);
}

static const void *f_plain_map(void *ctx, size_t i) {
    fake_src *f = ctx;
    return qd_ckpt_data(f->ck, f->plain[i]);
}

static qd_status read_typed(fake_src *f, const qd_st_tensor *t, qd_dtype want, size_t numel, void **out) {
    if (t->dtype != want || t->numel != numel)
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s' is %s with %llu elements, expected %s with %zu", f->dir,
                       t->name, qd_dtype_name(t->dtype), (unsigned long long)t->numel, qd_dtype_name(want), numel);
    unsigned char *buf;
    QD_ALLOC(buf, t->nbytes);
    qd_status st = qd_ckpt_read_raw(f->ck, t, buf);
    if (st != QD_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return QD_OK;
}

/* fill bits / group size / sym that the report left out, from the data itself */
static void infer_scheme(const fake_layer *fl, qd_qlinear *l, int with_codes) {
    if (l->group_size == 0) {
        int *count = calloc((size_t)l->G, sizeof *count), gs = 0;
        if (count) {
            for (int k = 0; k < l->K; k++) count[l->g_idx[k]]++;
            for (int g = 0; g < l->G; g++) gs = count[g] > gs ? count[g] : gs;
            free(count);
        }
        l->group_size = l->G == 1 ? -1 : gs;
    }
    if (l->bits == 0) {
        int mx = 0;
        for (size_t i = 0; i < (size_t)l->G * l->N; i++) mx = l->zeros[i] > mx ? l->zeros[i] : mx;
        if (with_codes)
            for (size_t i = 0; i < (size_t)l->N * l->K; i++) mx = l->codes[i] > mx ? l->codes[i] : mx;
        l->bits = mx < 4 ? 2 : mx < 8 ? 3 : mx < 16 ? 4 : 8;
        qd_warn("%s: qdist_report.json gives no bits for this module; inferred %d from its codes", fl->name,
                l->bits);
    }
    if (l->sym < 0) {
        l->sym = 1;
        for (size_t i = 0; i < (size_t)l->G * l->N; i++)
            if (l->zeros[i] != (1 << (l->bits - 1))) l->sym = 0;
    }
}

static qd_status f_load_layer(void *ctx, size_t i, int with_codes, qd_qlinear *l) {
    fake_src *f = ctx;
    const fake_layer *fl = &f->layers[i];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", fl->name);
    if (fl->codes->ndim != 2 || fl->scales->ndim != 2 || fl->zeros->ndim != 2 || fl->g_idx->ndim != 1)
        return qd_fail(QD_ERR_FORMAT, "%s: layer '%s': qd_codes must be [N,K], qd_scales/qd_zeros [G,N], "
                       "qd_g_idx [K]", f->dir, fl->name);
    l->N = (int)fl->codes->shape[0];
    l->K = (int)fl->codes->shape[1];
    l->G = (int)fl->scales->shape[0];
    if (fl->scales->shape[1] != l->N || fl->zeros->shape[0] != l->G || fl->zeros->shape[1] != l->N ||
        fl->g_idx->shape[0] != l->K || l->G < 1)
        return qd_fail(QD_ERR_FORMAT, "%s: layer '%s': shapes disagree (codes [%d,%d], scales [%lld,%lld], zeros "
                       "[%lld,%lld], g_idx [%lld])", f->dir, fl->name, l->N, l->K, (long long)fl->scales->shape[0],
                       (long long)fl->scales->shape[1], (long long)fl->zeros->shape[0],
                       (long long)fl->zeros->shape[1], (long long)fl->g_idx->shape[0]);
    l->bits = fl->bits > 0 ? fl->bits : 0;
    l->group_size = fl->group_size != -2 ? fl->group_size : 0;
    l->sym = fl->sym;
    if (fl->scheme < 0)
        return qd_fail(QD_ERR_FORMAT, "%s: qdist_report.json gives layer '%s' a scheme that is not one of %s", f->dir,
                       fl->name, QD_SCHEME_CHOICES);
    l->scheme = (qd_scheme)fl->scheme;
    snprintf(l->method, sizeof l->method, "%s", fl->method[0] ? fl->method : f->run.method);
    qd_status st = read_typed(f, fl->scales, QD_DT_F32, (size_t)l->G * l->N, (void **)&l->scales);
    if (st == QD_OK) st = read_typed(f, fl->zeros, QD_DT_I32, (size_t)l->G * l->N, (void **)&l->zeros);
    if (st == QD_OK) st = read_typed(f, fl->g_idx, QD_DT_I32, (size_t)l->K, (void **)&l->g_idx);
    if (st == QD_OK && with_codes) st = read_typed(f, fl->codes, QD_DT_U8, (size_t)l->N * l->K, (void **)&l->codes);
    if (st == QD_OK && qd_scheme_static_act(l->scheme)) {
        char buf[QD_QNAME_MAX + 16];
        snprintf(buf, sizeof buf, "%s.qd_input_scale", fl->name);
        const qd_st_tensor *t = qd_ckpt_find(f->ck, buf);
        float *is = NULL;
        if (!t) st = qd_fail(QD_ERR_FORMAT, "%s: %s layer '%s' has no '%s'", f->dir, qd_scheme_name(l->scheme), fl->name, buf);
        if (st == QD_OK) st = read_typed(f, t, QD_DT_F32, 1, (void **)&is);
        if (st == QD_OK) l->input_scale = *is;
        free(is);
    }
    if (st == QD_OK && qd_scheme_is_nvfp4(l->scheme)) { /* the global scale the export writes beside the scales */
        float *g = NULL;
        st = fl->global ? read_typed(f, fl->global, QD_DT_F32, 1, (void **)&g)
                        : qd_fail(QD_ERR_FORMAT, "%s: nvfp4a16 layer '%s' has no '%s.qd_global_scale'", f->dir,
                                  fl->name, fl->name);
        if (st == QD_OK && !(g[0] > 0 && g[0] < INFINITY))
            st = qd_fail(QD_ERR_FORMAT, "%s: '%s.qd_global_scale' is %g, not a positive finite number", f->dir,
                         fl->name, (double)g[0]);
        if (st == QD_OK) l->global_scale = g[0];
        free(g);
    }
    if (st != QD_OK) {
        qd_qlinear_free(l);
        return st;
    }
    for (int k = 0; k < l->K; k++)
        if (l->g_idx[k] < 0 || l->g_idx[k] >= l->G) {
            st = qd_fail(QD_ERR_FORMAT, "%s: layer '%s': g_idx[%d] = %d outside 0..%d", f->dir, fl->name, k,
                         l->g_idx[k], l->G - 1);
            qd_qlinear_free(l);
            return st;
        }
    infer_scheme(fl, l, with_codes);
    return QD_OK;
}

static void f_free(void *ctx) {
    fake_src *f = ctx;
    if (!f) return;
    qd_ckpt_close(f->ck);
    free(f->layers);
    free(f->plain);
    free(f);
}

static const qd_qsource_i fake_iface = {
    .n_layers = f_n_layers,
    .load_layer = f_load_layer,
    .find_layer = f_find_layer,
    .n_plain = f_n_plain,
    .plain_info = f_plain_info,
    .plain_read = f_plain_read,
    .plain_map = f_plain_map,
    .meta_dir = f_meta_dir,
    .run = f_run,
    .free = f_free,
};

/* a module's entry: each field typed (qd-json.h); absent ones are inferred from the tensors. bits 0 is
 * what the report writes for a module kept in full precision. */
static qd_status apply_module(fake_layer *fl, qd_json_at at, const cJSON *m) {
    const char *method, *scheme;
    QD_CHECK(qd_json_int(at, m, "bits", 0, 64, fl->bits, &fl->bits));
    QD_CHECK(qd_json_int(at, m, "group_size", -1, INT_MAX, fl->group_size, &fl->group_size));
    QD_CHECK(qd_json_bool(at, m, "sym", fl->sym, &fl->sym));
    QD_CHECK(qd_json_str(at, m, "method", 0, &method));
    if (method) snprintf(fl->method, sizeof fl->method, "%s", method);
    QD_CHECK(qd_json_str(at, m, "scheme", 0, &scheme));
    qd_scheme sc = QD_SCHEME_WNA16;
    if (scheme) fl->scheme = qd_scheme_parse(scheme, &sc) == 0 ? (int)sc : -1;
    return QD_OK;
}

static qd_status read_settings(qd_qrun *run, qd_json_at at, const cJSON *o) {
    QD_CHECK(qd_json_bool(at, o, "act_order", run->act_order, &run->act_order));
    QD_CHECK(qd_json_bool(at, o, "static_groups", run->static_groups, &run->static_groups));
    QD_CHECK(qd_json_bool(at, o, "true_sequential", run->true_sequential, &run->true_sequential));
    const char *key = cJSON_GetObjectItemCaseSensitive(o, "damp") ? "damp" : "damp_percent", *method, *sd;
    QD_CHECK(qd_json_num(at, o, key, 0, 1, run->damp, &run->damp));
    QD_CHECK(qd_json_str(at, o, "method", 0, &method));
    if (method) snprintf(run->method, sizeof run->method, "%s", method);
    QD_CHECK(qd_json_str(at, o, "scale_dtype", 0, &sd));
    qd_dtype dt;
    if (sd && qd_dtype_from_name(sd, &dt) == 0 && qd_dtype_is_float(dt)) {
        run->scales_rounded = 1;
        run->scale_dtype = dt;
    }
    return QD_OK;
}

/* the settings (at the top, or under "settings", "run", "config" or "args") and the modules of the report */
static qd_status read_report_json(fake_src *f, const char *path, const cJSON *root) {
    QD_CHECK(read_settings(&f->run, (qd_json_at){path, ""}, root));
    static const char *setting_keys[] = {"settings", "run", "config", "args"};
    for (size_t i = 0; i < sizeof setting_keys / sizeof *setting_keys; i++) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, setting_keys[i]);
        if (cJSON_IsObject(s)) QD_CHECK(read_settings(&f->run, (qd_json_at){path, setting_keys[i]}, s));
    }
    const char *mkey = cJSON_GetObjectItemCaseSensitive(root, "modules") ? "modules" : "layers";
    const cJSON *mods = cJSON_GetObjectItemCaseSensitive(root, mkey);
    if (mods && !cJSON_IsNull(mods) && !cJSON_IsObject(mods) && !cJSON_IsArray(mods))
        return qd_json_bad((qd_json_at){path, ""}, mkey, mods,
                           "an object {prefix: {...}} or a list of {\"name\", ...}");
    const cJSON *m;
    int i = 0;
    cJSON_ArrayForEach(m, mods) {
        const char *name = NULL;
        if (cJSON_IsObject(mods)) name = m->string;
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(m, "name");
        if (!nm) nm = cJSON_GetObjectItemCaseSensitive(m, "module");
        if (cJSON_IsString(nm)) name = nm->valuestring;
        char obj[QD_QNAME_MAX + 32];
        if (cJSON_IsObject(mods)) snprintf(obj, sizeof obj, "%s.%s", mkey, m->string);
        else snprintf(obj, sizeof obj, "%s[%d]", mkey, i);
        i++;
        if (!name) continue;
        long li = find_layer_idx(f, name);
        if (li >= 0) QD_CHECK(apply_module(&f->layers[li], (qd_json_at){path, obj}, m));
    }
    return QD_OK;
}

/* qdist_report.json is optional; a malformed one is an error (it is qdist's own output) */
static qd_status read_report(fake_src *f) {
    char path[4200];
    QD_CHECK(qd_path_join(path, sizeof path, f->dir, "qdist_report.json"));
    if (!qd_path_exists(path)) {
        qd_warn("%s: no qdist_report.json; the quantization scheme is inferred from the tensors", f->dir);
        return QD_OK;
    }
    char *text;
    size_t len;
    QD_CHECK(qd_read_file(path, 64u << 20, &text, &len));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qd_fail(QD_ERR_FORMAT, "%s: not a JSON object", path);
    }
    qd_status st = read_report_json(f, path, root);
    cJSON_Delete(root);
    return st;
}

qd_status qd_qsource_open_fake(const char *dir, qd_qsource *out) {
    out->iface = NULL;
    out->ctx = NULL;
    fake_src *f;
    QD_ALLOC(f, 1);
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    f->run.damp = -1;
    f->run.true_sequential = 1;
    qd_status st = qd_ckpt_open(dir, 1, &f->ck);
    if (st != QD_OK) {
        free(f);
        return st;
    }
    size_t nt = f->ck->ntensors;
    f->layers = calloc(nt ? nt : 1, sizeof *f->layers);
    f->plain = calloc(nt ? nt : 1, sizeof *f->plain);
    if (!f->layers || !f->plain) {
        f_free(f);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory listing %zu tensors", dir, nt);
    }
    for (size_t i = 0; i < nt; i++) {
        const char *nm = f->ck->tensors[i]->name;
        if (!has_suffix(nm, ".qd_codes")) continue;
        fake_layer *fl = &f->layers[f->nlayers];
        size_t plen = strlen(nm) - strlen(".qd_codes");
        if (plen >= QD_QNAME_MAX) {
            f_free(f);
            return qd_fail(QD_ERR_FORMAT, "%s: tensor name '%s' too long", dir, nm);
        }
        memcpy(fl->name, nm, plen);
        fl->name[plen] = '\0';
        fl->bits = -1;
        fl->group_size = -2;
        fl->sym = -1;
        char buf[QD_QNAME_MAX + 16];
        const qd_st_tensor **slots[4] = {&fl->codes, &fl->scales, &fl->zeros, &fl->g_idx};
        for (int s = 0; s < 4; s++) {
            snprintf(buf, sizeof buf, "%s%s", fl->name, qd_suffixes[s]);
            *slots[s] = qd_ckpt_find(f->ck, buf);
            if (!*slots[s]) {
                f_free(f);
                return qd_fail(QD_ERR_FORMAT, "%s: layer '%s' has qd_codes but no '%s'", dir, fl->name, buf);
            }
        }
        snprintf(buf, sizeof buf, "%s.qd_global_scale", fl->name);
        fl->global = qd_ckpt_find(f->ck, buf);
        f->nlayers++;
    }
    /* an original model, or a run whose every Linear was skipped: exporting it would write a checkpoint
     * labelled gptq/awq/compressed-tensors whose weights are all unquantized */
    if (f->nlayers == 0) {
        f_free(f);
        return qd_fail(QD_ERR_FORMAT, "%s: no quantized layer (no '*.qd_codes' tensor): --input must be a directory "
                       "written by 'qdist quantize --format fake'", dir);
    }
    for (size_t i = 0; i < nt; i++) {
        const char *nm = f->ck->tensors[i]->name;
        int skip = 0;
        for (int s = 0; s < 5 && !skip; s++) skip = has_suffix(nm, qd_suffixes[s]);
        skip |= has_suffix(nm, ".qd_global_scale");
        /* the rest of a layer whose qd_codes are gone (one expert of a partial copy): exporting its float
         * .weight as an unquantized Linear would give a checkpoint that looks complete but is not */
        const char *dot = strrchr(nm, '.');
        if (skip && dot && (size_t)(dot - nm) < QD_QNAME_MAX) {
            char prefix[QD_QNAME_MAX];
            memcpy(prefix, nm, (size_t)(dot - nm));
            prefix[dot - nm] = '\0';
            if (find_layer_idx(f, prefix) < 0) {
                st = qd_fail(QD_ERR_FORMAT, "%s: '%s' has no '%s.qd_codes' beside it: the directory is not a "
                             "whole 'qdist quantize --format fake' output", dir, nm, prefix);
                f_free(f); /* after the message: nm is the checkpoint's */
                return st;
            }
        }
        if (!skip && has_suffix(nm, ".weight")) {
            char prefix[QD_QNAME_MAX];
            size_t plen = strlen(nm) - strlen(".weight");
            if (plen < sizeof prefix) {
                memcpy(prefix, nm, plen);
                prefix[plen] = '\0';
                skip = find_layer_idx(f, prefix) >= 0;
            }
        }
        if (!skip) f->plain[f->nplain++] = f->ck->tensors[i];
    }
    st = read_report(f);
    if (st != QD_OK) {
        f_free(f);
        return st;
    }
    out->iface = &fake_iface;
    out->ctx = f;
    return QD_OK;
}
