/* SPDX-License-Identifier: MIT
 * model-config.c - read a Hugging Face config.json into qd_model_cfg.
 *
 * Defaults follow the transformers config classes of the supported architectures, so a config that
 * transformers loads means the same thing here. Anything we cannot honour (other MoE families, unknown rope types,
 * per-layer rope parameters) is refused by name rather than silently approximated: a wrong rope would
 * quantize against the wrong activations without any visible error. The fields every family shares
 * are read here; each architecture reads its own flags (qd-arch.h read_flags).
 */
#include "qd-model.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "qd-arch.h"
#include "qd-check.h"
#include "qd-fs.h"
#include "qd-json.h"
#include "qd-log.h"
#include "qd-model-json.h"

#define QD_MAX_CONFIG_BYTES (16u << 20)

/* mixture-of-experts families, recognised so the refusal can say what the model is */
static const char *const moe_archs[] = {
    "MixtralForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "Qwen3NextForCausalLM",
    "DeepseekForCausalLM", "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "PhimoeForCausalLM",
    "OlmoeForCausalLM", "GraniteMoeForCausalLM", "GraniteMoeSharedForCausalLM", "GraniteMoeHybridForCausalLM",
    "DbrxForCausalLM", "JambaForCausalLM", "JetMoeForCausalLM", "GptOssForCausalLM", "Llama4ForCausalLM",
    "Llama4ForConditionalGeneration", "Glm4MoeForCausalLM", "MiniMaxForCausalLM", "MiniMaxM1ForCausalLM",
    "Ernie4_5_MoeForCausalLM", "HunYuanMoEV1ForCausalLM", "Dots1ForCausalLM", "BailingMoeForCausalLM",
    "ArcticForCausalLM", "Grok1ForCausalLM", "FlexOlmoForCausalLM", "Mistral3ForConditionalGeneration",
};

static const char *const moe_fields[] = {"num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"};

static const char *type_name(const cJSON *v) {
    if (!v) return "missing";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    return "an object";
}

static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNull(v) ? NULL : v; /* null means "not set" in every HF config */
}

/* Upper bounds of the size fields: a few times the largest released models (hidden 16384, intermediate
 * 53248, 126 layers, 128 heads, head_dim 256, vocab 262144), low enough that every product of two
 * dims used to size a buffer fits comfortably in 64 bits and every Linear's N and K fit in an int. */
#define QD_CFG_MAX_HIDDEN (1 << 18)
#define QD_CFG_MAX_INTERMEDIATE (1 << 20)
#define QD_CFG_MAX_LAYERS 4096
#define QD_CFG_MAX_HEADS 4096
#define QD_CFG_MAX_HEAD_DIM 4096
#define QD_CFG_MAX_VOCAB (1 << 24)
#define QD_CFG_MAX_POSITIONS (1 << 28)

/* positive integer field; def < 0 means required */
static qd_status get_int(const cJSON *o, const char *name, int def, const char *path, int *out) {
    const cJSON *v = field(o, name);
    if (!v) {
        if (def < 0) return qd_fail(QD_ERR_FORMAT, "%s: required field \"%s\" is missing", path, name);
        *out = def;
        return QD_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (!cJSON_IsNumber(v) || !(d >= 1 && d <= INT_MAX) || (double)(int)d != d)
        return qd_fail(QD_ERR_FORMAT, "%s: \"%s\" must be a positive integer (got %s)", path, name,
                       cJSON_IsNumber(v) ? "a non-positive or fractional number" : type_name(v));
    *out = (int)d;
    return QD_OK;
}

/* get_int bounded by max (a config beyond it is corrupt or not a model qdist can hold) */
static qd_status get_int_max(const cJSON *o, const char *name, int def, int max, const char *path, int *out) {
    QD_CHECK(get_int(o, name, def, path, out));
    if (*out > max)
        return qd_fail(QD_ERR_FORMAT, "%s: \"%s\" is %d; qdist supports at most %d", path, name, *out, max);
    return QD_OK;
}

static qd_status get_pos_double(const cJSON *o, const char *name, double def, const char *path, double *out) {
    const cJSON *v = field(o, name);
    if (!v) {
        if (def < 0) return qd_fail(QD_ERR_FORMAT, "%s: required field \"%s\" is missing", path, name);
        *out = def;
        return QD_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > 1e300)
        return qd_fail(QD_ERR_FORMAT, "%s: \"%s\" must be a positive number (got %s)", path, name,
                       cJSON_IsNumber(v) ? "a non-positive number" : type_name(v));
    *out = v->valuedouble;
    return QD_OK;
}

static qd_status get_bool(const cJSON *o, const char *name, int def, const char *path, int *out) {
    const cJSON *v = field(o, name);
    if (!v) {
        *out = def;
        return QD_OK;
    }
    if (!cJSON_IsBool(v))
        return qd_fail(QD_ERR_FORMAT, "%s: \"%s\" must be true or false (got %s)", path, name, type_name(v));
    *out = cJSON_IsTrue(v);
    return QD_OK;
}

/* token id: an integer, a list of them (the first counts), or absent (-1) */
static qd_status get_token(const cJSON *o, const char *name, const char *path, int *out) {
    const cJSON *v = field(o, name);
    *out = -1;
    if (v && cJSON_IsArray(v)) v = v->child;
    if (!v) return QD_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= INT_MAX) ||
        (double)(int)v->valuedouble != v->valuedouble)
        return qd_fail(QD_ERR_FORMAT, "%s: \"%s\" must be a non-negative integer or a list of them", path, name);
    *out = (int)v->valuedouble;
    return QD_OK;
}

static qd_status parse_dtype(const cJSON *root, const char *path, qd_dtype *out) {
    const char *fname = "dtype";
    const cJSON *v = field(root, "dtype"); /* transformers >= 4.56 writes "dtype" */
    if (!v) {
        fname = "torch_dtype";
        v = field(root, "torch_dtype");
    }
    *out = QD_DT_F32;
    if (!v) return QD_OK;
    if (!cJSON_IsString(v))
        return qd_fail(QD_ERR_FORMAT, "%s: \"%s\" must be a string such as \"bfloat16\" (got %s)", path, fname, type_name(v));
    const char *s = v->valuestring;
    if (strncmp(s, "torch.", 6) == 0) s += 6;
    if (strcmp(s, "float32") == 0 || strcmp(s, "float") == 0) *out = QD_DT_F32;
    else if (strcmp(s, "bfloat16") == 0) *out = QD_DT_BF16;
    else if (strcmp(s, "float16") == 0 || strcmp(s, "half") == 0) *out = QD_DT_F16;
    else if (strcmp(s, "float64") == 0) *out = QD_DT_F64;
    else if (strcmp(s, "auto") == 0) *out = QD_DT_F32;
    else
        return qd_fail(QD_ERR_FORMAT, "%s: \"%s\" is '%.40s'; expected float32, bfloat16, float16 or float64", path,
                       fname, v->valuestring);
    return QD_OK;
}

/* optional number >= 0 (mscale, ...): absent or null keeps def */
static qd_status get_nonneg(const cJSON *o, const char *name, const char *what, const char *path, double *out) {
    const cJSON *v = field(o, name);
    if (!v) return QD_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 1e6)
        return qd_fail(QD_ERR_FORMAT, "%s: %s.%s must be a number in 0..1e6 (got %s)", path, what, name,
                       cJSON_IsNumber(v) ? "a number outside it" : type_name(v));
    *out = v->valuedouble;
    return QD_OK;
}

static double yarn_get_mscale(double scale, double mscale) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* YaRN as transformers reads it: original_max_position_embeddings from the top level (its priority), the
 * scaling object, or max_position_embeddings; factor absent or null: max_pos / original; 0 or null betas
 * take the defaults 32 and 1; attention_factor absent: from factor, mscale and mscale_all_dim. */
static qd_status parse_yarn(const cJSON *root, const cJSON *sc, const char *what, const char *path, int max_pos,
                            qd_rope *r) {
    const cJSON *top = field(root, "original_max_position_embeddings");
    QD_CHECK(get_int_max(top ? root : sc, "original_max_position_embeddings", max_pos, QD_CFG_MAX_POSITIONS, path,
                         &r->original_max_pos));
    r->factor = (double)max_pos / r->original_max_pos;
    QD_CHECK(get_pos_double(sc, "factor", r->factor, path, &r->factor));
    r->beta_fast = 32, r->beta_slow = 1, r->mscale = r->mscale_all_dim = 0, r->attention_factor = -1;
    QD_CHECK(get_nonneg(sc, "beta_fast", what, path, &r->beta_fast));
    QD_CHECK(get_nonneg(sc, "beta_slow", what, path, &r->beta_slow));
    QD_CHECK(get_nonneg(sc, "mscale", what, path, &r->mscale));
    QD_CHECK(get_nonneg(sc, "mscale_all_dim", what, path, &r->mscale_all_dim));
    QD_CHECK(get_nonneg(sc, "attention_factor", what, path, &r->attention_factor));
    QD_CHECK(get_bool(sc, "truncate", 1, path, &r->truncate));
    if (r->beta_fast == 0) r->beta_fast = 32;
    if (r->beta_slow == 0) r->beta_slow = 1;
    if (r->factor > 1e6)
        return qd_fail(QD_ERR_FORMAT, "%s: %s.factor is %g; yarn supports at most 1e6", path, what, r->factor);
    if (r->attention_factor < 0)
        r->attention_factor = r->mscale != 0 && r->mscale_all_dim != 0
                                  ? yarn_get_mscale(r->factor, r->mscale) / yarn_get_mscale(r->factor, r->mscale_all_dim)
                                  : yarn_get_mscale(r->factor, 1.0);
    return QD_OK;
}

double qd_rope_softmax_mscale(const qd_rope *r) {
    if (r->type == QD_ROPE_DEFAULT || r->mscale_all_dim == 0) return 1.0;
    double m = yarn_get_mscale(r->factor, r->mscale_all_dim);
    return m * m;
}

/* scaling: the rope_scaling object (hub form) or the rope_parameters object (newer form) */
static qd_status parse_rope_scaling(const cJSON *root, const cJSON *sc, const char *what, const char *path, int max_pos,
                                    qd_rope *r) {
    r->type = QD_ROPE_DEFAULT;
    r->factor = 1.0;
    if (!sc) return QD_OK;
    if (!cJSON_IsObject(sc)) return qd_fail(QD_ERR_FORMAT, "%s: \"%s\" must be an object or null", path, what);
    const cJSON *t = field(sc, "rope_type");
    if (!t) t = field(sc, "type"); /* configs written before transformers 4.45 */
    if (t && !cJSON_IsString(t)) return qd_fail(QD_ERR_FORMAT, "%s: %s.rope_type must be a string", path, what);
    const char *type = t ? t->valuestring : "default";
    if (strcmp(type, "default") == 0) return QD_OK;
    if (strcmp(type, "linear") == 0) {
        r->type = QD_ROPE_LINEAR;
        return get_pos_double(sc, "factor", -1, path, &r->factor);
    }
    if (strcmp(type, "llama3") == 0) {
        r->type = QD_ROPE_LLAMA3;
        QD_CHECK(get_pos_double(sc, "factor", -1, path, &r->factor));
        QD_CHECK(get_pos_double(sc, "low_freq_factor", -1, path, &r->low_freq_factor));
        QD_CHECK(get_pos_double(sc, "high_freq_factor", -1, path, &r->high_freq_factor));
        QD_CHECK(get_int(sc, "original_max_position_embeddings", -1, path, &r->original_max_pos));
        if (r->high_freq_factor <= r->low_freq_factor)
            return qd_fail(QD_ERR_FORMAT, "%s: %s: llama3 rope needs high_freq_factor > low_freq_factor", path, what);
        return QD_OK;
    }
    if (strcmp(type, "yarn") == 0) {
        r->type = QD_ROPE_YARN;
        return parse_yarn(root, sc, what, path, max_pos, r);
    }
    return qd_fail(QD_ERR_UNSUPPORTED, "%s: %s: rope type '%.40s' is not supported (supported: default, linear, llama3, "
                   "yarn)", path, what, type);
}

static qd_status parse_rope(const cJSON *root, const char *path, int max_pos, qd_rope *r) {
    memset(r, 0, sizeof *r);
    const cJSON *rp = field(root, "rope_parameters");
    if (rp) {
        if (!cJSON_IsObject(rp)) return qd_fail(QD_ERR_FORMAT, "%s: \"rope_parameters\" must be an object", path);
        if (!field(rp, "rope_type") && !field(rp, "rope_theta") && rp->child && cJSON_IsObject(rp->child))
            return qd_fail(QD_ERR_UNSUPPORTED, "%s: per-layer-type \"rope_parameters\" (key '%s') are not supported",
                           path, rp->child->string);
        /* rope_theta lives inside rope_parameters; older writers may still keep it at the top */
        const cJSON *src = field(rp, "rope_theta") ? rp : root;
        QD_CHECK(get_pos_double(src, "rope_theta", 10000.0, path, &r->theta));
        return parse_rope_scaling(root, rp, "rope_parameters", path, max_pos, r);
    }
    QD_CHECK(get_pos_double(root, "rope_theta", 10000.0, path, &r->theta));
    return parse_rope_scaling(root, field(root, "rope_scaling"), "rope_scaling", path, max_pos, r);
}

static int name_in(const char *name, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0) return 1;
    return 0;
}

static qd_status parse_arch(const cJSON *root, const char *path, qd_model_cfg *c) {
    char supported[256];
    qd_arch_supported_list(supported, sizeof supported);
    const cJSON *archs = field(root, "architectures");
    const cJSON *mt = field(root, "model_type");
    if (mt && !cJSON_IsString(mt))
        return qd_fail(QD_ERR_FORMAT, "%s: \"model_type\" must be a string (got %s)", path, type_name(mt));
    if (mt) snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
    const char *name = NULL;
    if (archs) {
        if (!cJSON_IsArray(archs) || !cJSON_IsString(archs->child))
            return qd_fail(QD_ERR_FORMAT, "%s: \"architectures\" must be a list of class names (got %s)", path,
                           type_name(archs));
        name = archs->child->valuestring;
    } else if (mt) {
        const struct qd_arch *a = qd_arch_by_model_type(mt->valuestring);
        if (!a)
            return qd_fail(QD_ERR_UNSUPPORTED, "%s: no \"architectures\" and model_type '%.40s' is not supported "
                           "(supported: %s)", path, mt->valuestring, supported);
        name = a->name;
    } else {
        return qd_fail(QD_ERR_FORMAT, "%s: required field \"architectures\" is missing", path);
    }
    snprintf(c->arch_name, sizeof c->arch_name, "%s", name);
    int moe = name_in(name, moe_archs, sizeof moe_archs / sizeof moe_archs[0]) || strstr(name, "Moe") ||
              strstr(name, "MoE");
    const char *moe_field = NULL;
    for (size_t i = 0; i < sizeof moe_fields / sizeof moe_fields[0] && !moe_field; i++) {
        const cJSON *v = field(root, moe_fields[i]);
        if (cJSON_IsNumber(v) && v->valuedouble > 0) moe_field = moe_fields[i];
    }
    c->arch = qd_arch_find(name);
    if (c->arch && (c->arch->moe || !moe_field)) return QD_OK; /* the MoE families qdist supports included */
    c->arch = NULL;
    if (moe || moe_field)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: %.64s is a mixture-of-experts model%s%s%s that qdist "
                       "does not support yet (supported: %s)", path, name, moe_field ? " (" : "", moe_field ? moe_field : "",
                       moe_field ? " is set)" : "", supported);
    return qd_fail(QD_ERR_UNSUPPORTED, "%s: architecture '%.64s' is not supported (supported: %s)", path, name,
                   supported);
}

static qd_status parse_sizes(const cJSON *root, const char *path, qd_model_cfg *c) {
    QD_CHECK(get_int_max(root, "hidden_size", -1, QD_CFG_MAX_HIDDEN, path, &c->hidden));
    QD_CHECK(get_int_max(root, "intermediate_size", -1, QD_CFG_MAX_INTERMEDIATE, path, &c->intermediate));
    QD_CHECK(get_int_max(root, "num_hidden_layers", -1, QD_CFG_MAX_LAYERS, path, &c->nlayers));
    QD_CHECK(get_int_max(root, "num_attention_heads", -1, QD_CFG_MAX_HEADS, path, &c->nheads));
    QD_CHECK(get_int_max(root, "num_key_value_heads", c->nheads, QD_CFG_MAX_HEADS, path, &c->nkv));
    QD_CHECK(get_int_max(root, "vocab_size", -1, QD_CFG_MAX_VOCAB, path, &c->vocab));
    QD_CHECK(get_int_max(root, "max_position_embeddings", 2048, QD_CFG_MAX_POSITIONS, path, &c->max_pos));
    QD_CHECK(get_pos_double(root, "rms_norm_eps", 1e-6, path, &c->rms_eps));
    if (c->nheads % c->nkv != 0)
        return qd_fail(QD_ERR_FORMAT, "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)", path,
                       c->nheads, c->nkv);
    if (field(root, "head_dim")) {
        QD_CHECK(get_int_max(root, "head_dim", -1, QD_CFG_MAX_HEAD_DIM, path, &c->head_dim));
    } else {
        if (c->hidden % c->nheads != 0)
            return qd_fail(QD_ERR_FORMAT, "%s: hidden_size (%d) is not a multiple of num_attention_heads (%d) and no "
                           "head_dim is given", path, c->hidden, c->nheads);
        c->head_dim = c->hidden / c->nheads;
    }
    if (c->head_dim % 2 != 0)
        return qd_fail(QD_ERR_FORMAT, "%s: head_dim %d is odd; rotary embeddings need an even head_dim", path, c->head_dim);
    /* the attention projections are [heads * head_dim, hidden]: keep them as big as a Linear may be */
    if ((int64_t)c->nheads * c->head_dim > QD_CFG_MAX_INTERMEDIATE)
        return qd_fail(QD_ERR_FORMAT, "%s: num_attention_heads * head_dim = %lld; qdist supports at most %d", path,
                       (long long)c->nheads * c->head_dim, QD_CFG_MAX_INTERMEDIATE);
    return QD_OK;
}

/* The architecture's own flags, then what every family carries. */
static qd_status parse_flags(const cJSON *root, const char *path, qd_model_cfg *c) {
    QD_CHECK(get_bool(root, "tie_word_embeddings", 0, path, &c->tie_embed));
    QD_CHECK(c->arch->read_flags(root, path, c));
    QD_CHECK(get_token(root, "bos_token_id", path, &c->bos_id));
    QD_CHECK(get_token(root, "eos_token_id", path, &c->eos_id));
    const cJSON *q = field(root, "quantization_config");
    if (q) {
        if (!cJSON_IsObject(q))
            return qd_fail(QD_ERR_FORMAT, "%s: \"quantization_config\" must be an object (got %s)", path, type_name(q));
        c->quantized = 1;
        const char *m;
        QD_CHECK(qd_json_str((qd_json_at){path, "quantization_config"}, q, "quant_method", 0, &m));
        snprintf(c->quant_method, sizeof c->quant_method, "%s", m ? m : "unknown");
        return qd_cfg_fp8_source(q, path, c);
    }
    return QD_OK;
}

qd_status qd_cfg_int(const cJSON *o, const char *name, int def, const char *path, int *out) {
    return get_int(o, name, def, path, out);
}

qd_status qd_cfg_bool(const cJSON *o, const char *name, int def, const char *path, int *out) {
    return get_bool(o, name, def, path, out);
}

qd_status qd_model_cfg_parse(const char *json, const char *path, qd_model_cfg *out) {
    memset(out, 0, sizeof *out);
    out->bos_id = out->eos_id = -1;
    cJSON *root;
    QD_CHECK(qd_json_parse(json, strlen(json), path, &root));
    qd_status st = QD_OK;
    if (!cJSON_IsObject(root)) st = qd_fail(QD_ERR_FORMAT, "%s: expected a JSON object", path);
    if (st == QD_OK) st = parse_arch(root, path, out);
    if (st == QD_OK) st = parse_sizes(root, path, out);
    if (st == QD_OK) st = parse_rope(root, path, out->max_pos, &out->rope);
    if (st == QD_OK) st = parse_dtype(root, path, &out->dtype);
    if (st == QD_OK) st = parse_flags(root, path, out);
    cJSON_Delete(root);
    return st;
}

qd_status qd_model_cfg_load(const char *model_dir, qd_model_cfg *out) {
    char path[4096];
    if (qd_path_exists(model_dir) && !qd_is_dir(model_dir))
        return qd_fail(QD_ERR_IO, "%s: not a directory (expected a Hugging Face model directory)", model_dir);
    QD_CHECK(qd_path_join(path, sizeof path, model_dir, "config.json"));
    if (!qd_path_exists(path))
        return qd_fail(QD_ERR_IO, "%s: config.json is missing (expected a Hugging Face model directory)", path);
    char *text;
    size_t len;
    QD_CHECK(qd_read_file(path, QD_MAX_CONFIG_BYTES, &text, &len));
    if (strlen(text) != len) {
        free(text);
        return qd_fail(QD_ERR_FORMAT, "%s: not valid JSON (contains a NUL byte)", path);
    }
    qd_status st = qd_model_cfg_parse(text, path, out);
    free(text);
    return st;
}
