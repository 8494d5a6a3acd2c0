/* SPDX-License-Identifier: MIT
 * recipe.c - reading a recipe JSON (docs/numerics.md) and resolving a module's spec. */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-json.h"
#include "qd-log.h"
#include "qd-qbounds.h"
#include "qd-range.h"
#include "qd-recipe.h"

/* one set of optional fields: has_* says which were given */
typedef struct {
    int has_method, has_bits, has_gs, has_sym, has_act, has_static, has_damp, has_mse, has_skip, has_scheme;
    qd_qspec v;
} partial_spec;

typedef struct {
    regex_t re;
    char *pattern;
    partial_spec spec;
} override;

struct qd_recipe {
    char *path;
    partial_spec top;
    int has_ts, has_lm_head, has_ns, has_sl, has_seed, has_mode;
    qd_recipe_run run;
    int noverrides;
    override *overrides;
};

const char *qd_recipe_path(const qd_recipe *r) { return r ? r->path : ""; }

void qd_recipe_free(qd_recipe *r) {
    if (!r) return;
    for (int i = 0; i < r->noverrides; i++) {
        regfree(&r->overrides[i].re);
        free(r->overrides[i].pattern);
    }
    free(r->overrides);
    free(r->path);
    free(r);
}

/* a number or a bool as is_num / is_bool say; the message is qd-json.h's */
static qd_status want(qd_json_at at, const cJSON *it, int is_num, int is_bool) {
    if (is_num && !cJSON_IsNumber(it)) return qd_json_bad(at, it->string, it, "a number");
    if (is_bool && !cJSON_IsBool(it)) return qd_json_bad(at, it->string, it, "true or false");
    return QD_OK;
}

/* a number within range (qd-qbounds.h), the same bounds the command line enforces; integer: no fraction */
static qd_status num_in(qd_json_at at, const cJSON *it, const char *range, int integer, double *out) {
    double lo, hi, v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (qd_range_parse(range, NULL, &lo, &hi) != 0)
        return qd_fail(QD_ERR_INTERNAL, "recipe: bad range '%s' for \"%s\"", range, it->string);
    if (!cJSON_IsNumber(it) || !isfinite(v) || v < lo || v > hi || (integer && v != floor(v))) {
        char exp[80];
        snprintf(exp, sizeof exp, "%s in %s", integer ? "an integer" : "a number", range);
        return qd_json_bad(at, it->string, it, exp);
    }
    *out = v;
    return QD_OK;
}

/* a spec key: 1 when consumed, 0 when not a spec key */
static qd_status spec_key(const char *path, const char *obj, const cJSON *it, partial_spec *p, int *used) {
    qd_json_at at = {path, obj};
    const char *k = it->string;
    *used = 1;
    if (strcmp(k, "method") == 0) {
        const char *m = cJSON_GetStringValue(it);
        if (!m || (strcmp(m, "rtn") && strcmp(m, "gptq") && strcmp(m, "awq")))
            return qd_fail(QD_ERR_FORMAT, "%s: \"method\" must be \"rtn\", \"gptq\" or \"awq\"", path);
        p->v.method = strcmp(m, "rtn") == 0 ? QD_METHOD_RTN : strcmp(m, "gptq") == 0 ? QD_METHOD_GPTQ : QD_METHOD_AWQ;
        p->has_method = 1;
    } else if (strcmp(k, "bits") == 0) {
        double v;
        QD_CHECK(num_in(at, it, QD_RANGE_BITS, 1, &v));
        int b = (int)v;
        if (b != 2 && b != 3 && b != 4 && b != 8) return qd_fail(QD_ERR_FORMAT, "%s: \"bits\" must be 2, 3, 4 or 8", path);
        p->v.bits = b, p->has_bits = 1;
    } else if (strcmp(k, "group_size") == 0) {
        double v;
        QD_CHECK(num_in(at, it, QD_RANGE_GROUP_SIZE, 1, &v));
        if (v == 0) return qd_fail(QD_ERR_FORMAT, "%s: \"group_size\" must be > 0 or -1", path);
        p->v.group_size = (int)v, p->has_gs = 1;
    } else if (strcmp(k, "sym") == 0) {
        QD_CHECK(want(at, it, 0, 1));
        p->v.sym = cJSON_IsTrue(it), p->has_sym = 1;
    } else if (strcmp(k, "act_order") == 0 || strcmp(k, "desc_act") == 0) {
        QD_CHECK(want(at, it, 0, 1));
        p->v.act_order = cJSON_IsTrue(it), p->has_act = 1;
    } else if (strcmp(k, "static_groups") == 0) {
        QD_CHECK(want(at, it, 0, 1));
        p->v.static_groups = cJSON_IsTrue(it), p->has_static = 1;
    } else if (strcmp(k, "damp") == 0) {
        double v;
        QD_CHECK(num_in(at, it, QD_RANGE_DAMP, 0, &v));
        p->v.damp = v, p->has_damp = 1;
    } else if (strcmp(k, "mse") == 0) {
        QD_CHECK(want(at, it, 0, 1));
        p->v.mse = cJSON_IsTrue(it), p->has_mse = 1;
    } else if (strcmp(k, "scheme") == 0) {
        const char *m = cJSON_GetStringValue(it);
        if (!m || qd_scheme_parse(m, &p->v.scheme) != 0)
            return qd_fail(QD_ERR_USAGE, "%s: \"scheme\" must be one of %s", path, QD_SCHEME_CHOICES);
        p->has_scheme = 1;
    } else if (strcmp(k, "skip") == 0) {
        QD_CHECK(want(at, it, 0, 1));
        p->v.skip = cJSON_IsTrue(it), p->has_skip = 1;
    } else {
        *used = 0;
    }
    return QD_OK;
}

/* a scheme other than wna16 fixes bits, group size and symmetry (and a float one rtn or gptq): an object that
 * sets both is refused rather than one of them silently ignored */
static qd_status scheme_conflict(const char *path, const char *where, const partial_spec *p) {
    if (!p->has_scheme || p->v.scheme == QD_SCHEME_WNA16) return QD_OK;
    const char *key = p->has_bits ? "bits" : p->has_gs ? "group_size" : p->has_sym ? "sym" : NULL;
    if (!key && qd_scheme_is_float(p->v.scheme) && p->has_method && p->v.method != QD_METHOD_RTN &&
        !(qd_scheme_gptq_targets(p->v.scheme) && p->v.method == QD_METHOD_GPTQ))
        key = "method";
    if (!key && p->v.scheme == QD_SCHEME_W8A8_INT8 && p->has_method && p->v.method == QD_METHOD_AWQ) key = "method";
    if (!key) return QD_OK;
    return qd_fail(QD_ERR_USAGE, "%s: %s\"scheme\": \"%s\" fixes %s (docs/formats.md); remove \"%s\"", path, where,
                   qd_scheme_name(p->v.scheme),
                   strcmp(key, "method") == 0 ? "the method (rtn or gptq)" : "bits, group size and sym",
                   key);
}

static qd_status parse(qd_recipe *r, const cJSON *root) {
    const char *path = r->path;
    if (!cJSON_IsObject(root)) return qd_fail(QD_ERR_FORMAT, "%s: a recipe is a JSON object", path);
    for (const cJSON *it = root->child; it; it = it->next) {
        int used;
        QD_CHECK(spec_key(path, "", it, &r->top, &used));
        if (used) continue;
        const char *k = it->string;
        if (strcmp(k, "true_sequential") == 0) {
            QD_CHECK(want((qd_json_at){path, ""}, it, 0, 1));
            r->run.true_sequential = cJSON_IsTrue(it), r->has_ts = 1;
        } else if (strcmp(k, "lm_head") == 0) {
            QD_CHECK(want((qd_json_at){path, ""}, it, 0, 1));
            r->run.lm_head = cJSON_IsTrue(it), r->has_lm_head = 1;
        } else if (strcmp(k, "calibration") == 0) {
            if (!cJSON_IsObject(it)) return qd_fail(QD_ERR_FORMAT, "%s: \"calibration\" must be an object", path);
            for (const cJSON *c = it->child; c; c = c->next) {
                double v;
                if (strcmp(c->string, "nsamples") == 0) {
                    QD_CHECK(num_in((qd_json_at){path, "calibration"}, c, QD_RANGE_NSAMPLES, 1, &v));
                    r->run.nsamples = (int)v, r->has_ns = 1;
                } else if (strcmp(c->string, "seqlen") == 0) {
                    QD_CHECK(num_in((qd_json_at){path, "calibration"}, c, QD_RANGE_SEQLEN, 1, &v));
                    r->run.seqlen = (int)v, r->has_sl = 1;
                } else if (strcmp(c->string, "seed") == 0) {
                    QD_CHECK(num_in((qd_json_at){path, "calibration"}, c, QD_RANGE_SEED, 1, &v));
                    r->run.seed = (long long)v, r->has_seed = 1;
                } else if (strcmp(c->string, "mode") == 0 && cJSON_IsString(c) &&
                         (strcmp(c->valuestring, "random") == 0 || strcmp(c->valuestring, "concat") == 0))
                    snprintf(r->run.calib_mode, sizeof r->run.calib_mode, "%s", c->valuestring), r->has_mode = 1;
                else
                    return qd_fail(QD_ERR_FORMAT, "%s: calibration.\"%s\" is unknown or has a bad value "
                                   "(nsamples > 0, seqlen > 1, seed, mode \"random\"|\"concat\")", path, c->string);
            }
        } else if (strcmp(k, "overrides") == 0) {
            if (!cJSON_IsArray(it)) return qd_fail(QD_ERR_FORMAT, "%s: \"overrides\" must be an array", path);
            int n = cJSON_GetArraySize(it);
            r->overrides = calloc((size_t)(n ? n : 1), sizeof *r->overrides);
            if (!r->overrides) return qd_fail(QD_ERR_NOMEM, "%s: out of memory", path);
            const cJSON *o;
            cJSON_ArrayForEach(o, it) {
                override *ov = &r->overrides[r->noverrides];
                const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "match");
                if (!cJSON_IsObject(o) || !cJSON_IsString(m))
                    return qd_fail(QD_ERR_FORMAT, "%s: overrides[%d] needs a \"match\" regex string", path, r->noverrides);
                int rc = regcomp(&ov->re, m->valuestring, REG_EXTENDED | REG_NOSUB);
                if (rc) return qd_fail(QD_ERR_FORMAT, "%s: overrides[%d]: bad regex '%s'", path, r->noverrides, m->valuestring);
                ov->pattern = strdup(m->valuestring);
                r->noverrides++;
                if (!ov->pattern) return qd_fail(QD_ERR_NOMEM, "%s: out of memory", path);
                for (const cJSON *f = o->child; f; f = f->next) {
                    if (strcmp(f->string, "match") == 0) continue;
                    int u;
                    char obj[32];
                    snprintf(obj, sizeof obj, "overrides[%d]", r->noverrides - 1);
                    QD_CHECK(spec_key(path, obj, f, &ov->spec, &u));
                    if (!u || strcmp(f->string, "method") == 0)
                        return qd_fail(QD_ERR_FORMAT, "%s: overrides[%d]: \"%s\" cannot be overridden per module",
                                       path, r->noverrides - 1, f->string);
                }
                char where[48];
                snprintf(where, sizeof where, "overrides[%d]: ", r->noverrides - 1);
                QD_CHECK(scheme_conflict(path, where, &ov->spec));
            }
        } else if (strcmp(k, "comment") == 0 || strcmp(k, "name") == 0) {
            /* free text */
        } else {
            return qd_fail(QD_ERR_FORMAT, "%s: unknown key \"%s\" (docs/numerics.md lists the recipe schema)", path, k);
        }
    }
    return scheme_conflict(path, "", &r->top);
}

qd_status qd_recipe_load(const char *path, qd_recipe **out) {
    char *text;
    size_t len;
    QD_CHECK(qd_read_file(path, 1 << 20, &text, &len));
    qd_recipe *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r), free(text);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory", path);
    }
    cJSON *root;
    qd_status pst = qd_json_parse(text, len, path, &root);
    free(text);
    if (pst != QD_OK) {
        qd_recipe_free(r);
        return pst;
    }
    qd_status st = parse(r, root);
    cJSON_Delete(root);
    if (st != QD_OK) {
        qd_recipe_free(r);
        return st;
    }
    *out = r;
    return QD_OK;
}

static void apply(const partial_spec *p, qd_qspec *s) {
    if (p->has_method) s->method = p->v.method;
    if (p->has_bits) s->bits = p->v.bits;
    if (p->has_gs) s->group_size = p->v.group_size;
    if (p->has_sym) s->sym = p->v.sym;
    if (p->has_act) s->act_order = p->v.act_order;
    if (p->has_static) s->static_groups = p->v.static_groups;
    if (p->has_damp) s->damp = p->v.damp;
    if (p->has_mse) s->mse = p->v.mse;
    if (p->has_skip) s->skip = p->v.skip;
    if (p->has_scheme) {
        s->scheme = p->v.scheme;
        qd_qspec_apply_scheme(s);
        if (p->has_method && p->v.method == QD_METHOD_GPTQ && qd_scheme_gptq_targets(s->scheme))
            s->method = QD_METHOD_GPTQ; /* asked for in the same object */
    }
}

void qd_recipe_apply_base(const qd_recipe *r, qd_qspec *base, qd_recipe_run *run) {
    if (!r) return;
    apply(&r->top, base);
    if (r->has_ts) run->true_sequential = r->run.true_sequential;
    if (r->has_lm_head) run->lm_head = r->run.lm_head;
    if (r->has_ns) run->nsamples = r->run.nsamples;
    if (r->has_sl) run->seqlen = r->run.seqlen;
    if (r->has_seed) run->seed = r->run.seed;
    if (r->has_mode) snprintf(run->calib_mode, sizeof run->calib_mode, "%s", r->run.calib_mode);
}

void qd_recipe_resolve(const qd_recipe *r, const qd_qspec *base, const char *module, qd_qspec *out) {
    *out = *base;
    if (!r) return;
    for (int i = 0; i < r->noverrides; i++)
        if (regexec(&r->overrides[i].re, module, 0, NULL, 0) == 0) apply(&r->overrides[i].spec, out);
}

int qd_recipe_noverrides(const qd_recipe *r) { return r ? r->noverrides : 0; }

void qd_recipe_mark(const qd_recipe *r, const char *module, unsigned char *hit) {
    for (int i = 0; r && i < r->noverrides; i++)
        if (regexec(&r->overrides[i].re, module, 0, NULL, 0) == 0) hit[i] = 1;
}

void qd_recipe_warn_unmatched(const qd_recipe *r, const unsigned char *hit, const char *example) {
    for (int i = 0; r && i < r->noverrides; i++)
        if (!hit[i])
            qd_warn("%s: overrides[%d] \"match\": \"%s\" finds no Linear of this model that qdist quantizes (names "
                    "as %s; MoE routers and shared_expert_gate stay in full precision), so it changes nothing",
                    r->path, i, r->overrides[i].pattern, example);
}

size_t qd_recipe_describe(const qd_recipe *r, const char *module, char *buf, size_t n) {
    size_t len = 0;
    if (n) buf[0] = 0;
    if (!r || !n) return 0;
    for (int i = 0; i < r->noverrides && len + 1 < n; i++) {
        const override *ov = &r->overrides[i];
        const partial_spec *p = &ov->spec;
        if (regexec(&ov->re, module, 0, NULL, 0) != 0) continue;
        char f[160];
        int m = snprintf(f, sizeof f, "%s%s%s%s%s%s%s%s", p->has_scheme ? " scheme" : "",
                         p->has_bits ? " bits" : "", p->has_gs ? " group_size" : "",
                         p->has_sym ? " sym" : "", p->has_act ? " act_order" : "",
                         p->has_static ? " static_groups" : "", p->has_damp ? " damp" : "", p->has_mse ? " mse" : "");
        if (m <= 0) continue;
        int w = snprintf(buf + len, n - len, "%soverrides[%d] \"match\": \"%s\" sets%s", len ? "; " : "", i,
                         ov->pattern, f);
        if (w < 0) break;
        len = (size_t)w < n - len ? len + (size_t)w : n - 1;
    }
    return len;
}

/* a flag that contradicts the run's scheme (from --scheme or the recipe) */
static qd_status flags_vs_scheme(const qd_recipe_flags *f, const qd_qspec *base) {
    const char *sc = qd_scheme_name(base->scheme);
    int fp8 = qd_scheme_is_float(base->scheme), bits = qd_scheme_bits(base->scheme);
    int gptq_ok = qd_scheme_gptq_targets(base->scheme) && base->method == QD_METHOD_GPTQ;
    if (fp8 && base->method != QD_METHOD_RTN && !gptq_ok && (f->seen_method || base->method == QD_METHOD_AWQ))
        return qd_fail(QD_ERR_USAGE, "quantize: --scheme %s is quantized by round-to-nearest or GPTQ: drop --method %s or "
                       "use --method rtn|gptq", sc, qd_method_name(base->method));
    if (base->scheme == QD_SCHEME_W8A8_INT8 && base->method == QD_METHOD_AWQ)
        return qd_fail(QD_ERR_USAGE, "quantize: --scheme w8a8-int8 is quantized by rtn or gptq, not awq");
    const char *flag = f->seen_bits && f->bits != bits ? "--bits" : f->seen_group_size ? "--group-size"
                     : f->seen_asym && f->asym ? "--asym" : fp8 && f->seen_act_order && f->act_order ? "--act-order"
                     : fp8 && f->seen_static_groups && f->static_groups ? "--static-groups"
                     : qd_scheme_is_fp4(base->scheme) && f->seen_mse && f->mse ? "--mse" : NULL;
    if (flag)
        return qd_fail(QD_ERR_USAGE, "quantize: --scheme %s fixes %d-bit symmetric weights with %s scales: drop %s", sc,
                       bits, base->scheme == QD_SCHEME_FP8_BLOCK ? "128 x 128 block"
                             : qd_scheme_is_nvfp4(base->scheme) ? "e4m3 per-16 (and a global fp32)"
                             : qd_scheme_is_mxfp4(base->scheme) ? "e8m0 per-32" : "per-channel", flag);
    return QD_OK;
}

qd_status qd_recipe_apply_flags(const char *path, const qd_recipe_flags *f, qd_recipe **recipe, qd_qspec *base,
                                qd_recipe_run *run) {
    *recipe = NULL;
    *base = (qd_qspec){.method = QD_METHOD_GPTQ, .bits = 4, .group_size = 128, .sym = 1, .damp = 0.01};
    *run = (qd_recipe_run){.true_sequential = 1, .nsamples = 128, .seqlen = 0, .seed = 0};
    int method_from_recipe_awq = 0;
    if (path) {
        QD_CHECK(qd_recipe_load(path, recipe));
        qd_qspec probe = *base;
        qd_recipe_apply_base(*recipe, &probe, run);
        method_from_recipe_awq = probe.method == QD_METHOD_AWQ;
        if (method_from_recipe_awq) base->sym = 0;
        qd_recipe_apply_base(*recipe, base, run);
    }
    if (f->seen_method) {
        base->method = strcmp(f->method, "rtn") == 0    ? QD_METHOD_RTN
                     : strcmp(f->method, "gptq") == 0 ? QD_METHOD_GPTQ
                                                      : QD_METHOD_AWQ;
        if (base->method == QD_METHOD_AWQ && !method_from_recipe_awq) base->sym = 0; /* AWQ's zero point by default */
    }
    if (f->seen_scheme) {
        qd_scheme sc;
        if (qd_scheme_parse(f->scheme, &sc) != 0) {
            qd_recipe_free(*recipe);
            *recipe = NULL;
            return qd_fail(QD_ERR_USAGE, "quantize: --scheme '%s' is unknown; expected %s", f->scheme ? f->scheme : "",
                           QD_SCHEME_CHOICES);
        }
        base->scheme = sc;
    }
    if (f->seen_bits) base->bits = f->bits;
    if (f->seen_group_size) base->group_size = f->group_size;
    if (f->seen_sym) base->sym = f->sym;
    if (f->seen_asym) base->sym = !f->asym;
    if (f->seen_act_order) base->act_order = f->act_order;
    if (f->seen_static_groups) base->static_groups = f->static_groups;
    if (f->seen_damp) base->damp = f->damp;
    if (f->seen_mse) base->mse = f->mse;
    if (f->seen_true_sequential) run->true_sequential = f->true_sequential;
    if (f->seen_nsamples) run->nsamples = f->nsamples;
    if (f->seen_seqlen) run->seqlen = f->seqlen;
    if (f->seen_seed) run->seed = f->seed;
    if (f->seen_calib_mode) snprintf(run->calib_mode, sizeof run->calib_mode, "%s", f->calib_mode);
    if (base->scheme != QD_SCHEME_WNA16) {
        qd_status cst = flags_vs_scheme(f, base);
        if (cst != QD_OK) {
            qd_recipe_free(*recipe);
            *recipe = NULL;
            return cst;
        }
        int gptq = base->method == QD_METHOD_GPTQ && (f->seen_method || (*recipe && (*recipe)->top.has_method));
        qd_qspec_apply_scheme(base);
        /* a float scheme by GPTQ only when asked for: the built-in default method is not a request */
        if (gptq && qd_scheme_gptq_targets(base->scheme)) base->method = QD_METHOD_GPTQ;
    }
    if (!run->calib_mode[0])
        snprintf(run->calib_mode, sizeof run->calib_mode, "%s", base->method == QD_METHOD_AWQ ? "concat" : "random");
    if (run->lm_head) {
        qd_recipe_free(*recipe);
        *recipe = NULL;
        return qd_fail(QD_ERR_USAGE, "%s: \"lm_head\": true is not supported: qdist never quantizes lm_head (it "
                       "stays in the model's dtype); remove the key or set it false", path);
    }
    return QD_OK;
}
