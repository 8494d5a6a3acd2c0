/* SPDX-License-Identifier: MIT
 * arch-moe.c - the mixture-of-experts families (transformers' modeling_mixtral, modeling_qwen2_moe,
 * modeling_qwen3_moe): the attention of Mistral / Qwen2 / Qwen3, and an MLP of routed SwiGLU experts
 * whose tensors come from the block's Linear table (linears.c). Mixtral: block_sparse_moe.gate and
 * experts.E.w1/w3/w2, softmax top-k renormalised. Qwen2-MoE: mlp.gate, mlp.experts.E.*_proj, a
 * shared expert behind a sigmoid shared_expert_gate. Qwen3-MoE: Qwen2-MoE's names without the shared
 * expert, q/k norms. Both Qwen families: norm_topk_prob, decoder_sparse_step, mlp_only_layers.
 */
#include "qd-arch.h"
#include "qd-check.h"
#include "qd-log.h"
#include "qd-model-json.h"

#include <cjson/cJSON.h>

static int attn_bias(const qd_model_cfg *c) { return c->attn_bias; }
static int o_bias(const qd_model_cfg *c) { return c->o_bias; }

static const struct qd_block_tensor mixtral_tensors[] = {
    {"self_attn.q_proj.weight", QD_T_LINEAR_W, QD_LIN_Q, NULL},
    {"self_attn.k_proj.weight", QD_T_LINEAR_W, QD_LIN_K, NULL},
    {"self_attn.v_proj.weight", QD_T_LINEAR_W, QD_LIN_V, NULL},
    {"self_attn.o_proj.weight", QD_T_LINEAR_W, QD_LIN_O, NULL},
    {"input_layernorm.weight", QD_T_NORM, QD_NORM_IN, NULL},
    {"post_attention_layernorm.weight", QD_T_NORM, QD_NORM_POST, NULL},
};

static const struct qd_block_tensor qwen_moe_tensors[] = {
    {"self_attn.q_proj.weight", QD_T_LINEAR_W, QD_LIN_Q, NULL},
    {"self_attn.q_proj.bias", QD_T_LINEAR_B, QD_LIN_Q, attn_bias},
    {"self_attn.k_proj.weight", QD_T_LINEAR_W, QD_LIN_K, NULL},
    {"self_attn.k_proj.bias", QD_T_LINEAR_B, QD_LIN_K, attn_bias},
    {"self_attn.v_proj.weight", QD_T_LINEAR_W, QD_LIN_V, NULL},
    {"self_attn.v_proj.bias", QD_T_LINEAR_B, QD_LIN_V, attn_bias},
    {"self_attn.o_proj.weight", QD_T_LINEAR_W, QD_LIN_O, NULL},
    {"self_attn.o_proj.bias", QD_T_LINEAR_B, QD_LIN_O, o_bias},
    {"input_layernorm.weight", QD_T_NORM, QD_NORM_IN, NULL},
    {"post_attention_layernorm.weight", QD_T_NORM, QD_NORM_POST, NULL},
    {"self_attn.q_norm.weight", QD_T_NORM, QD_NORM_Q, NULL},
    {"self_attn.k_norm.weight", QD_T_NORM, QD_NORM_K, NULL},
};
#define N_QWEN2_MOE 10 /* without the q/k norms */
#define N_QWEN3_MOE (sizeof qwen_moe_tensors / sizeof qwen_moe_tensors[0])

/* the routing fields every family shares; experts is the family's field name */
static qd_status moe_common(const cJSON *root, const char *path, const char *experts, qd_model_cfg *c) {
    QD_CHECK(qd_cfg_int(root, experts, -1, path, &c->moe_experts));
    QD_CHECK(qd_cfg_int(root, "num_experts_per_tok", 2, path, &c->moe_topk));
    if (c->moe_experts > 4096 || c->moe_topk > c->moe_experts)
        return qd_fail(QD_ERR_FORMAT, "%s: %d experts with num_experts_per_tok %d (expected 1 <= top-k <= experts "
                       "<= 4096)", path, c->moe_experts, c->moe_topk);
    return QD_OK;
}

static qd_status mixtral_flags(const cJSON *root, const char *path, qd_model_cfg *c) {
    QD_CHECK(qd_cfg_int(root, "sliding_window", 0, path, &c->sliding_window));
    QD_CHECK(moe_common(root, path, "num_local_experts", c));
    c->moe_inter = c->intermediate;
    c->moe_norm_topk = 1;
    c->moe_sparse_step = 1;
    c->moe_mixtral = 1;
    return QD_OK;
}

/* Qwen2-MoE and Qwen3-MoE: num_experts (transformers 5 also writes num_local_experts), moe_intermediate_size,
 * norm_topk_prob, decoder_sparse_step, mlp_only_layers (a list of block indices) */
static qd_status qwen_moe_common(const cJSON *root, const char *path, qd_model_cfg *c) {
    const cJSON *ne = cJSON_GetObjectItemCaseSensitive(root, "num_experts");
    QD_CHECK(moe_common(root, path, ne && !cJSON_IsNull(ne) ? "num_experts" : "num_local_experts", c));
    QD_CHECK(qd_cfg_int(root, "moe_intermediate_size", -1, path, &c->moe_inter));
    QD_CHECK(qd_cfg_bool(root, "norm_topk_prob", 0, path, &c->moe_norm_topk));
    QD_CHECK(qd_cfg_int(root, "decoder_sparse_step", 1, path, &c->moe_sparse_step));
    if (c->moe_inter > (1 << 20)) return qd_fail(QD_ERR_FORMAT, "%s: \"moe_intermediate_size\" is too large", path);
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers");
    if (mo && !cJSON_IsNull(mo)) {
        if (!cJSON_IsArray(mo))
            return qd_fail(QD_ERR_FORMAT, "%s: \"mlp_only_layers\" must be a list of block indices", path);
        for (const cJSON *v = mo->child; v; v = v->next) {
            double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
            if (!(d >= 0 && d < c->nlayers) || (double)(int)d != d)
                return qd_fail(QD_ERR_FORMAT, "%s: \"mlp_only_layers\" holds %s; expected block indices 0..%d", path,
                               cJSON_IsNumber(v) ? "an index outside the model" : "a non-number", c->nlayers - 1);
            c->moe_mlp_only[(int)d / 8] |= (unsigned char)(1u << ((int)d % 8));
        }
    }
    return QD_OK;
}

static qd_status qwen2_moe_flags(const cJSON *root, const char *path, qd_model_cfg *c) {
    int use_sw = 0;
    QD_CHECK(qd_cfg_bool(root, "qkv_bias", 1, path, &c->attn_bias));
    QD_CHECK(qd_cfg_bool(root, "use_sliding_window", 0, path, &use_sw));
    if (use_sw) QD_CHECK(qd_cfg_int(root, "sliding_window", 0, path, &c->sliding_window));
    QD_CHECK(qwen_moe_common(root, path, c));
    QD_CHECK(qd_cfg_int(root, "shared_expert_intermediate_size", -1, path, &c->moe_shared_inter));
    return QD_OK;
}

static qd_status qwen3_moe_flags(const cJSON *root, const char *path, qd_model_cfg *c) {
    int bias = 0, use_sw = 0;
    QD_CHECK(qd_cfg_bool(root, "attention_bias", 0, path, &bias));
    c->attn_bias = c->o_bias = bias;
    c->qk_norm = 1;
    QD_CHECK(qd_cfg_bool(root, "use_sliding_window", 0, path, &use_sw));
    if (use_sw) QD_CHECK(qd_cfg_int(root, "sliding_window", 0, path, &c->sliding_window));
    return qwen_moe_common(root, path, c);
}

const struct qd_arch qd_arch_mixtral = {
    .name = "MixtralForCausalLM", .model_type = "mixtral", .read_flags = mixtral_flags,
    .tensors = mixtral_tensors, .ntensors = sizeof mixtral_tensors / sizeof mixtral_tensors[0], .moe = 1,
    .linear_shape = qd_arch_llama_linear_shape,
};

const struct qd_arch qd_arch_qwen2_moe = {
    .name = "Qwen2MoeForCausalLM", .model_type = "qwen2_moe", .read_flags = qwen2_moe_flags,
    .tensors = qwen_moe_tensors, .ntensors = N_QWEN2_MOE, .moe = 1, .linear_shape = qd_arch_llama_linear_shape,
};

const struct qd_arch qd_arch_qwen3_moe = {
    .name = "Qwen3MoeForCausalLM", .model_type = "qwen3_moe", .read_flags = qwen3_moe_flags,
    .tensors = qwen_moe_tensors, .ntensors = N_QWEN3_MOE, .moe = 1, .linear_shape = qd_arch_llama_linear_shape,
};
