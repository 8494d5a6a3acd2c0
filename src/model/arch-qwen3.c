/* SPDX-License-Identifier: MIT
 * arch-qwen3.c - Qwen3ForCausalLM (transformers' modeling_qwen3): Llama's block plus an RMSNorm over
 * head_dim on the queries and keys (q_norm, k_norm); attention_bias on q/k/v/o, no MLP bias; an
 * optional sliding window.
 */
#include "qd-arch.h"
#include "qd-check.h"
#include "qd-model-json.h"

static int attn_bias(const qd_model_cfg *c) { return c->attn_bias; }
static int o_bias(const qd_model_cfg *c) { return c->o_bias; }

static const struct qd_block_tensor qwen3_tensors[] = {
    {"self_attn.q_proj.weight", QD_T_LINEAR_W, QD_LIN_Q, NULL},
    {"self_attn.q_proj.bias", QD_T_LINEAR_B, QD_LIN_Q, attn_bias},
    {"self_attn.k_proj.weight", QD_T_LINEAR_W, QD_LIN_K, NULL},
    {"self_attn.k_proj.bias", QD_T_LINEAR_B, QD_LIN_K, attn_bias},
    {"self_attn.v_proj.weight", QD_T_LINEAR_W, QD_LIN_V, NULL},
    {"self_attn.v_proj.bias", QD_T_LINEAR_B, QD_LIN_V, attn_bias},
    {"self_attn.o_proj.weight", QD_T_LINEAR_W, QD_LIN_O, NULL},
    {"self_attn.o_proj.bias", QD_T_LINEAR_B, QD_LIN_O, o_bias},
    {"mlp.gate_proj.weight", QD_T_LINEAR_W, QD_LIN_GATE, NULL},
    {"mlp.up_proj.weight", QD_T_LINEAR_W, QD_LIN_UP, NULL},
    {"mlp.down_proj.weight", QD_T_LINEAR_W, QD_LIN_DOWN, NULL},
    {"input_layernorm.weight", QD_T_NORM, QD_NORM_IN, NULL},
    {"post_attention_layernorm.weight", QD_T_NORM, QD_NORM_POST, NULL},
    {"self_attn.q_norm.weight", QD_T_NORM, QD_NORM_Q, NULL},
    {"self_attn.k_norm.weight", QD_T_NORM, QD_NORM_K, NULL},
};

static qd_status qwen3_flags(const struct cJSON *root, const char *path, qd_model_cfg *c) {
    int bias = 0, use_sw = 0;
    QD_CHECK(qd_cfg_bool(root, "attention_bias", 0, path, &bias));
    c->attn_bias = c->o_bias = bias;
    c->qk_norm = 1;
    QD_CHECK(qd_cfg_bool(root, "use_sliding_window", 0, path, &use_sw));
    if (use_sw) QD_CHECK(qd_cfg_int(root, "sliding_window", 0, path, &c->sliding_window));
    return QD_OK;
}

const struct qd_arch qd_arch_qwen3 = {
    .name = "Qwen3ForCausalLM", .model_type = "qwen3", .read_flags = qwen3_flags,
    .tensors = qwen3_tensors, .ntensors = sizeof qwen3_tensors / sizeof qwen3_tensors[0],
    .linear_shape = qd_arch_llama_linear_shape,
};
