/* SPDX-License-Identifier: MIT
 * Reading the normalizer, pre_tokenizer, post_processor and decoder sections of tokenizer.json.
 * Each reader accepts exactly the components and options qdist implements and refuses anything
 * else by name, so an unsupported file is never tokenised differently in silence. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-json.h"
#include "tok-internal.h"
#include "tok-load.h"

/* The split regexes as they appear in tokenizer.json files (Split pattern or ByteLevel's built-in). */
static const char *const RE_GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char *const RE_LLAMA3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const RE_QWEN2 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *const RE_O200K = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *const RE_TEKKEN = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const char *qd_tok_type(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

qd_status qd_tok_bool(const qd_tokenizer *t, const cJSON *o, const char *key, const char *where, int dflt, int *out) {
    return qd_json_bool((qd_json_at){t->path, where}, o, key, dflt, out);
}

qd_status qd_tok_strdup(const qd_tokenizer *t, const cJSON *o, const char *key, const char *where, char **out,
                        size_t *len) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v))
        return qd_fail(QD_ERR_FORMAT, "%s: %s: expected a string \"%s\"", t->path, where, key);
    size_t n = strlen(v->valuestring);
    char *s;
    QD_ALLOC(s, n + 1);
    memcpy(s, v->valuestring, n);
    *out = s;
    if (len) *len = n;
    return QD_OK;
}

/* {"String": s} patterns only: {"Regex": ...} in a Replace would need a regex engine */
static qd_status string_pattern(const qd_tokenizer *t, const cJSON *o, const char *where, char **out, size_t *len) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    if (cJSON_GetObjectItemCaseSensitive(p, "Regex"))
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: %s with a Regex pattern is not supported (only String patterns)",
                       t->path, where);
    return qd_tok_strdup(t, p, "String", where, out, len);
}

static qd_status add_norm(qd_tokenizer *t, const cJSON *o) {
    const char *ty = qd_tok_type(o);
    if (!ty) return qd_fail(QD_ERR_FORMAT, "%s: normalizer without a \"type\"", t->path);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "normalizers"), *e;
        cJSON_ArrayForEach(e, arr) QD_CHECK(add_norm(t, e));
        return QD_OK;
    }
    qd_norm_step st = {0};
    if (strcmp(ty, "NFC") == 0) st.kind = QD_NORM_NFC;
    else if (strcmp(ty, "Prepend") == 0) {
        st.kind = QD_NORM_PREPEND;
        QD_CHECK(qd_tok_strdup(t, o, "prepend", "normalizer Prepend", &st.a, &st.alen));
    } else if (strcmp(ty, "Replace") == 0) {
        st.kind = QD_NORM_REPLACE;
        QD_CHECK(string_pattern(t, o, "normalizer Replace", &st.a, &st.alen));
        QD_CHECK(qd_tok_strdup(t, o, "content", "normalizer Replace", &st.b, &st.blen));
        if (st.alen == 0) return qd_fail(QD_ERR_FORMAT, "%s: normalizer Replace with an empty pattern", t->path);
    } else
        return qd_fail(QD_ERR_UNSUPPORTED,
                       "%s: normalizer type '%s' is not supported (supported: NFC, Prepend, Replace, Sequence)",
                       t->path, ty);
    qd_norm_step *n = realloc(t->norm, (size_t)(t->nnorm + 1) * sizeof *n);
    if (!n) return qd_fail(QD_ERR_NOMEM, "%s: out of memory", t->path);
    t->norm = n;
    t->norm[t->nnorm++] = st;
    return QD_OK;
}

static qd_status prepend_scheme(const qd_tokenizer *t, const cJSON *o, const char *where, int *out) {
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "prepend_scheme");
    if (cJSON_IsString(ps)) {
        if (strcmp(ps->valuestring, "always") == 0) *out = QD_PREPEND_ALWAYS;
        else if (strcmp(ps->valuestring, "first") == 0) *out = QD_PREPEND_FIRST;
        else if (strcmp(ps->valuestring, "never") == 0) *out = QD_PREPEND_NEVER;
        else return qd_fail(QD_ERR_UNSUPPORTED, "%s: %s prepend_scheme '%s' is not one of always|first|never",
                            t->path, where, ps->valuestring);
        return QD_OK;
    }
    /* files written before prepend_scheme existed carry add_prefix_space */
    int aps;
    QD_CHECK(qd_tok_bool(t, o, "add_prefix_space", where, 1, &aps));
    *out = aps ? QD_PREPEND_ALWAYS : QD_PREPEND_NEVER;
    return QD_OK;
}

static qd_status add_pre(qd_tokenizer *t, const cJSON *o) {
    const char *ty = qd_tok_type(o);
    if (!ty) return qd_fail(QD_ERR_FORMAT, "%s: pre_tokenizer without a \"type\"", t->path);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers"), *e;
        cJSON_ArrayForEach(e, arr) QD_CHECK(add_pre(t, e));
        return QD_OK;
    }
    qd_pre_step st = {0};
    if (strcmp(ty, "ByteLevel") == 0) {
        st.kind = QD_PRE_BYTELEVEL;
        int b;
        QD_CHECK(qd_tok_bool(t, o, "use_regex", "pre_tokenizer ByteLevel", 1, &b));
        st.split = b;
        QD_CHECK(qd_tok_bool(t, o, "add_prefix_space", "pre_tokenizer ByteLevel", 0, &b));
        st.prefix_space = b;
        t->byte_level = 1;
    } else if (strcmp(ty, "Split") == 0) {
        st.kind = QD_PRE_SPLIT;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(p, "Regex");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(o, "behavior");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(p, "String");
        if (cJSON_IsString(str)) { /* a literal: any behavior, invert allowed */
            static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                                "Contiguous"};
            st.kind = QD_PRE_SPLIT_STR;
            st.behavior = -1;
            for (int b = 0; b < 5; b++)
                if (cJSON_IsString(beh) && strcmp(beh->valuestring, names[b]) == 0) st.behavior = b;
            if (st.behavior < 0)
                return qd_fail(QD_ERR_UNSUPPORTED, "%s: pre_tokenizer Split: behavior '%s' is not one of Removed, "
                               "Isolated, MergedWithPrevious, MergedWithNext, Contiguous", t->path,
                               cJSON_IsString(beh) ? beh->valuestring : "?");
            int inv;
            QD_CHECK(qd_tok_bool(t, o, "invert", "pre_tokenizer Split", 0, &inv));
            st.invert = inv;
            QD_CHECK(qd_tok_strdup(t, p, "String", "pre_tokenizer Split", &st.pat, &st.pat_len));
            goto add;
        }
        if (!cJSON_IsString(re))
            return qd_fail(QD_ERR_FORMAT, "%s: pre_tokenizer Split: pattern must be {\"Regex\": ...} or "
                           "{\"String\": ...}", t->path);
        if (strcmp(re->valuestring, RE_GPT2) == 0) st.split = QD_SPLIT_GPT2;
        else if (strcmp(re->valuestring, RE_LLAMA3) == 0) st.split = QD_SPLIT_LLAMA3;
        else if (strcmp(re->valuestring, RE_QWEN2) == 0) st.split = QD_SPLIT_QWEN2;
        else if (strcmp(re->valuestring, RE_O200K) == 0) st.split = QD_SPLIT_O200K;
        else if (strcmp(re->valuestring, RE_TEKKEN) == 0) st.split = QD_SPLIT_TEKKEN;
        else
            return qd_fail(QD_ERR_UNSUPPORTED,
                           "%s: pre_tokenizer Split regex '%.120s' is not supported (qdist implements the "
                           "GPT-2, Llama-3, Qwen2, o200k and Tekken patterns)", t->path, re->valuestring);
        int inv;
        QD_CHECK(qd_tok_bool(t, o, "invert", "pre_tokenizer Split", 0, &inv));
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0 || inv)
            return qd_fail(QD_ERR_UNSUPPORTED,
                           "%s: pre_tokenizer Split: only behavior 'Isolated' without invert is supported", t->path);
    } else if (strcmp(ty, "Metaspace") == 0) {
        st.kind = QD_PRE_METASPACE;
        char *r;
        QD_CHECK(qd_tok_strdup(t, o, "replacement", "pre_tokenizer Metaspace", &r, &st.repl_len));
        if (st.repl_len == 0 || st.repl_len > 4) {
            free(r);
            return qd_fail(QD_ERR_FORMAT, "%s: pre_tokenizer Metaspace replacement must be one character", t->path);
        }
        memcpy(st.repl, r, st.repl_len);
        free(r);
        QD_CHECK(prepend_scheme(t, o, "pre_tokenizer Metaspace", &st.prefix_space));
        int b;
        QD_CHECK(qd_tok_bool(t, o, "split", "pre_tokenizer Metaspace", 1, &b));
        st.split = b;
    } else if (strcmp(ty, "Digits") == 0) {
        st.kind = QD_PRE_DIGITS;
        int b;
        QD_CHECK(qd_tok_bool(t, o, "individual_digits", "pre_tokenizer Digits", 0, &b));
        st.split = b;
    } else
        return qd_fail(QD_ERR_UNSUPPORTED,
                       "%s: pre_tokenizer type '%s' is not supported (supported: ByteLevel, Split, Metaspace, "
                       "Digits, Sequence)", t->path, ty);
add:;
    qd_pre_step *n = realloc(t->pre, (size_t)(t->npre + 1) * sizeof *n);
    if (!n) {
        free(st.pat);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory", t->path);
    }
    t->pre = n;
    t->pre[t->npre++] = st;
    return QD_OK;
}

static qd_status special_ids(qd_tokenizer *t, const cJSON *specials, const char *name, int32_t **ids, int *n) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(specials, name);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(sp, "ids"), *e;
    if (!cJSON_IsArray(arr))
        return qd_fail(QD_ERR_FORMAT, "%s: post_processor TemplateProcessing: special token '%s' has no ids",
                       t->path, name);
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= t->nvocab ||
            e->valuedouble != (double)(int32_t)e->valuedouble)
            return qd_fail(QD_ERR_FORMAT, "%s: post_processor: special token '%s' has an id outside the vocabulary",
                           t->path, name);
        int32_t *g = realloc(*ids, (size_t)(*n + 1) * sizeof *g);
        if (!g) return qd_fail(QD_ERR_NOMEM, "%s: out of memory", t->path);
        *ids = g;
        (*ids)[(*n)++] = (int32_t)e->valuedouble;
    }
    return QD_OK;
}

static qd_status add_post(qd_tokenizer *t, const cJSON *o) {
    const char *ty = qd_tok_type(o);
    if (!ty) return qd_fail(QD_ERR_FORMAT, "%s: post_processor without a \"type\"", t->path);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "processors"), *e;
        cJSON_ArrayForEach(e, arr) QD_CHECK(add_post(t, e));
        return QD_OK;
    }
    if (strcmp(ty, "ByteLevel") == 0) return QD_OK; /* only adjusts offsets */
    if (strcmp(ty, "TemplateProcessing") != 0)
        return qd_fail(QD_ERR_UNSUPPORTED,
                       "%s: post_processor type '%s' is not supported (supported: TemplateProcessing, ByteLevel, "
                       "Sequence)", t->path, ty);
    if (t->ntmpl_pre || t->ntmpl_post)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: more than one TemplateProcessing post_processor", t->path);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single"), *e;
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    int seen_a = 0;
    cJSON_ArrayForEach(e, single) {
        const cJSON *stok = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        if (stok) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(stok, "id");
            if (!cJSON_IsString(id)) return qd_fail(QD_ERR_FORMAT, "%s: TemplateProcessing: SpecialToken without id", t->path);
            if (seen_a) QD_CHECK(special_ids(t, specials, id->valuestring, &t->tmpl_post, &t->ntmpl_post));
            else QD_CHECK(special_ids(t, specials, id->valuestring, &t->tmpl_pre, &t->ntmpl_pre));
        } else if (seq) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(seq, "id");
            if (!cJSON_IsString(id) || strcmp(id->valuestring, "A") != 0 || seen_a)
                return qd_fail(QD_ERR_UNSUPPORTED, "%s: TemplateProcessing: the single template must hold $A once",
                               t->path);
            seen_a = 1;
        } else
            return qd_fail(QD_ERR_FORMAT, "%s: TemplateProcessing: unknown template piece", t->path);
    }
    if (!seen_a) return qd_fail(QD_ERR_UNSUPPORTED, "%s: TemplateProcessing: the single template has no $A", t->path);
    return QD_OK;
}

static qd_status add_dec(qd_tokenizer *t, const cJSON *o) {
    const char *ty = qd_tok_type(o);
    if (!ty) return qd_fail(QD_ERR_FORMAT, "%s: decoder without a \"type\"", t->path);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "decoders"), *e;
        cJSON_ArrayForEach(e, arr) QD_CHECK(add_dec(t, e));
        return QD_OK;
    }
    qd_dec_step st = {0};
    if (strcmp(ty, "ByteLevel") == 0) st.kind = QD_DEC_BYTELEVEL;
    else if (strcmp(ty, "ByteFallback") == 0) st.kind = QD_DEC_BYTEFALLBACK;
    else if (strcmp(ty, "Fuse") == 0) st.kind = QD_DEC_FUSE;
    else if (strcmp(ty, "Replace") == 0) {
        st.kind = QD_DEC_REPLACE;
        QD_CHECK(string_pattern(t, o, "decoder Replace", &st.a, &st.alen));
        QD_CHECK(qd_tok_strdup(t, o, "content", "decoder Replace", &st.b, &st.blen));
        if (st.alen == 0) return qd_fail(QD_ERR_FORMAT, "%s: decoder Replace with an empty pattern", t->path);
    } else if (strcmp(ty, "Strip") == 0) {
        st.kind = QD_DEC_STRIP;
        QD_CHECK(qd_tok_strdup(t, o, "content", "decoder Strip", &st.a, &st.alen));
        QD_CHECK(qd_json_int((qd_json_at){t->path, "decoder Strip"}, o, "start", 0, INT_MAX, 0, &st.start));
        QD_CHECK(qd_json_int((qd_json_at){t->path, "decoder Strip"}, o, "stop", 0, INT_MAX, 0, &st.stop));
    } else if (strcmp(ty, "Metaspace") == 0) {
        st.kind = QD_DEC_METASPACE;
        QD_CHECK(qd_tok_strdup(t, o, "replacement", "decoder Metaspace", &st.a, &st.alen));
        QD_CHECK(prepend_scheme(t, o, "decoder Metaspace", &st.start));
    } else
        return qd_fail(QD_ERR_UNSUPPORTED,
                       "%s: decoder type '%s' is not supported (supported: ByteLevel, Metaspace, Replace, "
                       "ByteFallback, Fuse, Strip, Sequence)", t->path, ty);
    qd_dec_step *n = realloc(t->dec, (size_t)(t->ndec + 1) * sizeof *n);
    if (!n) return qd_fail(QD_ERR_NOMEM, "%s: out of memory", t->path);
    t->dec = n;
    t->dec[t->ndec++] = st;
    return QD_OK;
}

qd_status qd_tok_load_pipeline_pre(qd_tokenizer *t, const cJSON *root) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (n && !cJSON_IsNull(n)) QD_CHECK(add_norm(t, n));
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (p && !cJSON_IsNull(p)) QD_CHECK(add_pre(t, p));
    return QD_OK;
}

qd_status qd_tok_load_pipeline_post(qd_tokenizer *t, const cJSON *root) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (p && !cJSON_IsNull(p)) QD_CHECK(add_post(t, p));
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (d && !cJSON_IsNull(d)) {
        t->has_decoder = 1;
        QD_CHECK(add_dec(t, d));
    }
    t->bos_id = t->ntmpl_pre ? t->tmpl_pre[0] : -1;
    t->eos_id = t->ntmpl_post ? t->tmpl_post[t->ntmpl_post - 1] : -1;
    return QD_OK;
}
