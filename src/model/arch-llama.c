/* SPDX-License-Identifier: MIT
 * arch-llama.c - LlamaForCausalLM and MistralForCausalLM (transformers' modeling_llama /
 * modeling_mistral): q/k/v/o, gate/up/down, two RMSNorms; Llama may carry biases (attention_bias on
 * q/k/v/o, mlp_bias on gate/up/down), Mistral never does and may use a sliding window.
 */
#include "qd-arch.h"
#include "qd-check.h"
#include "qd-model-json.h"

#include <stdio.h>

static int attn_bias(const qd_model_cfg *c) { return c->attn_bias; }
static int o_bias(const qd_model_cfg *c) { return c->o_bias; }
static int mlp_bias(const qd_model_cfg *c) { return c->mlp_bias; }

static const struct qd_block_tensor llama_tensors[] = {
    {"self_attn.q_proj.weight", QD_T_LINEAR_W, QD_LIN_Q, NULL},
    {"self_attn.q_proj.bias", QD_T_LINEAR_B, QD_LIN_Q, attn_bias},
    {"self_attn.k_proj.weight", QD_T_LINEAR_W, QD_LIN_K, NULL},
    {"self_attn.k_proj.bias", QD_T_LINEAR_B, QD_LIN_K, attn_bias},
    {"self_attn.v_proj.weight", QD_T_LINEAR_W, QD_LIN_V, NULL},
    {"self_attn.v_proj.bias", QD_T_LINEAR_B, QD_LIN_V, attn_bias},
    {"self_attn.o_proj.weight", QD_T_LINEAR_W, QD_LIN_O, NULL},
    {"self_attn.o_proj.bias", QD_T_LINEAR_B, QD_LIN_O, o_bias},
    {"mlp.gate_proj.weight", QD_T_LINEAR_W, QD_LIN_GATE, NULL},
    {"mlp.gate_proj.bias", QD_T_LINEAR_B, QD_LIN_GATE, mlp_bias},
    {"mlp.up_proj.weight", QD_T_LINEAR_W, QD_LIN_UP, NULL},
    {"mlp.up_proj.bias", QD_T_LINEAR_B, QD_LIN_UP, mlp_bias},
    {"mlp.down_proj.weight", QD_T_LINEAR_W, QD_LIN_DOWN, NULL},
    {"mlp.down_proj.bias", QD_T_LINEAR_B, QD_LIN_DOWN, mlp_bias},
    {"input_layernorm.weight", QD_T_NORM, QD_NORM_IN, NULL},
    {"post_attention_layernorm.weight", QD_T_NORM, QD_NORM_POST, NULL},
};

void qd_arch_llama_linear_shape(const qd_model_cfg *c, qd_lin lin, int64_t *N, int64_t *K, char *fields,
                                size_t cap) {
    const int64_t H = c->hidden, I = c->intermediate, qo = (int64_t)c->nheads * c->head_dim,
                  kvo = (int64_t)c->nkv * c->head_dim;
    int64_t n = H, k = H;
    char f[96] = "";
    switch (lin) {
    case QD_LIN_Q:
        n = qo;
        snprintf(f, sizeof f, "num_attention_heads=%d, head_dim=%d, hidden_size=%d", c->nheads, c->head_dim, c->hidden);
        break;
    case QD_LIN_K:
    case QD_LIN_V:
        n = kvo;
        snprintf(f, sizeof f, "num_key_value_heads=%d, head_dim=%d, hidden_size=%d", c->nkv, c->head_dim, c->hidden);
        break;
    case QD_LIN_O:
        k = qo;
        snprintf(f, sizeof f, "hidden_size=%d, num_attention_heads=%d, head_dim=%d", c->hidden, c->nheads, c->head_dim);
        break;
    case QD_LIN_GATE:
    case QD_LIN_UP:
        n = I;
        snprintf(f, sizeof f, "intermediate_size=%d, hidden_size=%d", c->intermediate, c->hidden);
        break;
    case QD_LIN_DOWN:
        k = I;
        snprintf(f, sizeof f, "hidden_size=%d, intermediate_size=%d", c->hidden, c->intermediate);
        break;
    case QD_LIN_ROUTER:
        n = c->moe_experts;
        snprintf(f, sizeof f, "num_experts=%d, hidden_size=%d", c->moe_experts, c->hidden);
        break;
    case QD_LIN_SH_ROUTER:
        n = 1;
        snprintf(f, sizeof f, "1, hidden_size=%d", c->hidden);
        break;
    case QD_LIN_EXP_GATE:
    case QD_LIN_EXP_UP:
    case QD_LIN_SH_GATE:
    case QD_LIN_SH_UP: {
        int sh = lin == QD_LIN_SH_GATE || lin == QD_LIN_SH_UP, mi = sh ? c->moe_shared_inter : c->moe_inter;
        n = mi;
        snprintf(f, sizeof f, "%s=%d, hidden_size=%d", sh ? "shared_expert_intermediate_size" : "moe_intermediate_size",
                 mi, c->hidden);
        break;
    }
    default: { /* the down projection of an expert or the shared expert */
        int mi = lin == QD_LIN_SH_DOWN ? c->moe_shared_inter : c->moe_inter;
        k = mi;
        snprintf(f, sizeof f, "hidden_size=%d, %s=%d", c->hidden,
                 lin == QD_LIN_SH_DOWN ? "shared_expert_intermediate_size" : "moe_intermediate_size", mi);
        break;
    }
    }
    if (N) *N = n;
    if (K) *K = k;
    if (fields && cap) snprintf(fields, cap, "%s", f);
}

static qd_status llama_flags(const struct cJSON *root, const char *path, qd_model_cfg *c) {
    int bias = 0;
    QD_CHECK(qd_cfg_bool(root, "attention_bias", 0, path, &bias));
    QD_CHECK(qd_cfg_bool(root, "mlp_bias", 0, path, &c->mlp_bias));
    c->attn_bias = c->o_bias = bias;
    return QD_OK;
}

static qd_status mistral_flags(const struct cJSON *root, const char *path, qd_model_cfg *c) {
    return qd_cfg_int(root, "sliding_window", 0, path, &c->sliding_window);
}

const struct qd_arch qd_arch_llama = {
    .name = "LlamaForCausalLM", .model_type = "llama", .read_flags = llama_flags,
    .tensors = llama_tensors, .ntensors = sizeof llama_tensors / sizeof llama_tensors[0],
    .linear_shape = qd_arch_llama_linear_shape,
};

/* Mistral's block is Llama's without biases (its flags leave attn_bias/o_bias/mlp_bias at 0) */
const struct qd_arch qd_arch_mistral = {
    .name = "MistralForCausalLM", .model_type = "mistral", .read_flags = mistral_flags,
    .tensors = llama_tensors, .ntensors = sizeof llama_tensors / sizeof llama_tensors[0],
    .linear_shape = qd_arch_llama_linear_shape,
};
