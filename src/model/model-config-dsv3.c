/* SPDX-License-Identifier: MIT
 * model-config-dsv3.c - DeepSeek-V3's config.json fields (contract in qd-dsv3.h). */
#include "qd-dsv3.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-json.h"
#include "qd-log.h"
#include "qd-model-json.h"

#define DSV3_MAX_DIM (1 << 20)    /* a rank or a head width, as qd-model.h bounds intermediate sizes */
#define DSV3_MAX_EXPERTS (1 << 16)

static qd_status int_in(const cJSON *o, const char *name, int def, int max, const char *path, int *out) {
    QD_CHECK(qd_cfg_int(o, name, def, path, out));
    if (*out > max) return qd_fail(QD_ERR_FORMAT, "%s: \"%s\" is %d; qdist supports at most %d", path, name, *out, max);
    return QD_OK;
}

static qd_status str_is(const cJSON *o, const char *name, const char *want, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v) || (cJSON_IsString(v) && strcmp(v->valuestring, want) == 0)) return QD_OK;
    return qd_fail(QD_ERR_UNSUPPORTED, "%s: \"%s\" is %s%.40s%s; qdist supports \"%s\"", path, name,
                   cJSON_IsString(v) ? "'" : "not a string", cJSON_IsString(v) ? v->valuestring : "",
                   cJSON_IsString(v) ? "'" : "", want);
}

static qd_status sizes(const cJSON *o, const char *path, qd_dsv3_cfg *c) {
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "q_lora_rank");
    c->q_lora_rank = 0;
    if (!q) c->q_lora_rank = 1536;
    else if (!cJSON_IsNull(q)) QD_CHECK(int_in(o, "q_lora_rank", -1, DSV3_MAX_DIM, path, &c->q_lora_rank));
    QD_CHECK(int_in(o, "kv_lora_rank", 512, DSV3_MAX_DIM, path, &c->kv_lora_rank));
    QD_CHECK(int_in(o, "qk_nope_head_dim", 128, 4096, path, &c->qk_nope_head_dim));
    QD_CHECK(int_in(o, "qk_rope_head_dim", 64, 4096, path, &c->qk_rope_head_dim));
    QD_CHECK(int_in(o, "v_head_dim", 128, 4096, path, &c->v_head_dim));
    QD_CHECK(qd_cfg_bool(o, "rope_interleave", 1, path, &c->rope_interleave));
    if (c->qk_rope_head_dim % 2)
        return qd_fail(QD_ERR_FORMAT, "%s: \"qk_rope_head_dim\" is %d; rotary embeddings need an even width", path,
                       c->qk_rope_head_dim);
    c->qk_head_dim = c->qk_nope_head_dim + c->qk_rope_head_dim;
    return QD_OK;
}

static qd_status routing(const cJSON *o, const char *path, int nlayers, qd_dsv3_cfg *c) {
    QD_CHECK(int_in(o, "n_routed_experts", 256, DSV3_MAX_EXPERTS, path, &c->n_routed_experts));
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(o, "n_shared_experts");
    c->n_shared_experts = 1;
    if (cJSON_IsNumber(sh) && sh->valuedouble == 0) c->n_shared_experts = 0; /* a model without shared experts */
    else QD_CHECK(int_in(o, "n_shared_experts", 1, 1024, path, &c->n_shared_experts));
    QD_CHECK(int_in(o, "num_experts_per_tok", 8, DSV3_MAX_EXPERTS, path, &c->num_experts_per_tok));
    QD_CHECK(int_in(o, "n_group", 8, DSV3_MAX_EXPERTS, path, &c->n_group));
    QD_CHECK(int_in(o, "topk_group", 4, DSV3_MAX_EXPERTS, path, &c->topk_group));
    QD_CHECK(qd_cfg_bool(o, "norm_topk_prob", 1, path, &c->norm_topk_prob));
    QD_CHECK(int_in(o, "moe_intermediate_size", 2048, DSV3_MAX_DIM, path, &c->moe_intermediate_size));
    const cJSON *fk = cJSON_GetObjectItemCaseSensitive(o, "first_k_dense_replace");
    c->first_k_dense_replace = 3;
    if (cJSON_IsNumber(fk) && fk->valuedouble == 0) c->first_k_dense_replace = 0;
    else QD_CHECK(int_in(o, "first_k_dense_replace", 3, 1 << 16, path, &c->first_k_dense_replace));
    if (nlayers > 0 && c->first_k_dense_replace > nlayers)
        return qd_fail(QD_ERR_FORMAT, "%s: \"first_k_dense_replace\" (%d) is above num_hidden_layers (%d)", path,
                       c->first_k_dense_replace, nlayers);
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "routed_scaling_factor");
    c->routed_scaling_factor = 2.5;
    if (rs && !cJSON_IsNull(rs)) {
        if (!cJSON_IsNumber(rs) || !(rs->valuedouble > 0) || !isfinite(rs->valuedouble) || rs->valuedouble > 1e6)
            return qd_fail(QD_ERR_FORMAT, "%s: \"routed_scaling_factor\" must be a number in (0, 1e6]", path);
        c->routed_scaling_factor = rs->valuedouble;
    }
    QD_CHECK(str_is(o, "scoring_func", "sigmoid", path));
    QD_CHECK(str_is(o, "topk_method", "noaux_tc", path));
    int E = c->n_routed_experts, G = c->n_group;
    if (E % G != 0 || E / G < 2)
        return qd_fail(QD_ERR_FORMAT, "%s: \"n_routed_experts\" (%d) must be a multiple of \"n_group\" (%d) with at "
                       "least 2 experts per group", path, E, G);
    if (c->topk_group > G)
        return qd_fail(QD_ERR_FORMAT, "%s: \"topk_group\" (%d) is above \"n_group\" (%d)", path, c->topk_group, G);
    if (c->num_experts_per_tok > c->topk_group * (E / G))
        return qd_fail(QD_ERR_FORMAT, "%s: \"num_experts_per_tok\" (%d) is above the %d experts of topk_group (%d) "
                       "groups", path, c->num_experts_per_tok, c->topk_group * (E / G), c->topk_group);
    return QD_OK;
}

qd_status qd_dsv3_cfg_read(const cJSON *root, const char *path, const qd_model_cfg *base, qd_dsv3_cfg *out) {
    memset(out, 0, sizeof *out);
    QD_CHECK(sizes(root, path, out));
    QD_CHECK(routing(root, path, base ? base->nlayers : 0, out));
    if (base && (int64_t)base->nheads * out->qk_head_dim > DSV3_MAX_DIM)
        return qd_fail(QD_ERR_FORMAT, "%s: num_attention_heads * (qk_nope_head_dim + qk_rope_head_dim) = %lld; qdist "
                       "supports at most %d", path, (long long)base->nheads * out->qk_head_dim, DSV3_MAX_DIM);
    return QD_OK;
}

qd_status qd_dsv3_cfg_parse(const char *json, const char *path, int nlayers, qd_dsv3_cfg *out) {
    cJSON *root;
    QD_CHECK(qd_json_parse(json, strlen(json), path, &root));
    qd_status st = QD_OK;
    if (!cJSON_IsObject(root)) st = qd_fail(QD_ERR_FORMAT, "%s: expected a JSON object", path);
    qd_model_cfg base = {.nlayers = nlayers, .nheads = 1};
    if (st == QD_OK) st = qd_dsv3_cfg_read(root, path, &base, out);
    cJSON_Delete(root);
    return st;
}
