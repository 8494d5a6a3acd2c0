/* SPDX-License-Identifier: MIT
 * arch-qwen2.c - Qwen2ForCausalLM (transformers' modeling_qwen2): Llama's block with a bias on
 * q/k/v always and never on o_proj or the MLP; an optional sliding window.
 */
#include "qd-arch.h"
#include "qd-check.h"
#include "qd-model-json.h"

static const struct qd_block_tensor qwen2_tensors[] = {
    {"self_attn.q_proj.weight", QD_T_LINEAR_W, QD_LIN_Q, NULL},
    {"self_attn.q_proj.bias", QD_T_LINEAR_B, QD_LIN_Q, NULL},
    {"self_attn.k_proj.weight", QD_T_LINEAR_W, QD_LIN_K, NULL},
    {"self_attn.k_proj.bias", QD_T_LINEAR_B, QD_LIN_K, NULL},
    {"self_attn.v_proj.weight", QD_T_LINEAR_W, QD_LIN_V, NULL},
    {"self_attn.v_proj.bias", QD_T_LINEAR_B, QD_LIN_V, NULL},
    {"self_attn.o_proj.weight", QD_T_LINEAR_W, QD_LIN_O, NULL},
    {"mlp.gate_proj.weight", QD_T_LINEAR_W, QD_LIN_GATE, NULL},
    {"mlp.up_proj.weight", QD_T_LINEAR_W, QD_LIN_UP, NULL},
    {"mlp.down_proj.weight", QD_T_LINEAR_W, QD_LIN_DOWN, NULL},
    {"input_layernorm.weight", QD_T_NORM, QD_NORM_IN, NULL},
    {"post_attention_layernorm.weight", QD_T_NORM, QD_NORM_POST, NULL},
};

static qd_status qwen2_flags(const struct cJSON *root, const char *path, qd_model_cfg *c) {
    int use_sw = 0;
    c->attn_bias = 1;
    QD_CHECK(qd_cfg_bool(root, "use_sliding_window", 0, path, &use_sw));
    if (use_sw) QD_CHECK(qd_cfg_int(root, "sliding_window", 0, path, &c->sliding_window));
    return QD_OK;
}

const struct qd_arch qd_arch_qwen2 = {
    .name = "Qwen2ForCausalLM", .model_type = "qwen2", .read_flags = qwen2_flags,
    .tensors = qwen2_tensors, .ntensors = sizeof qwen2_tensors / sizeof qwen2_tensors[0],
    .linear_shape = qd_arch_llama_linear_shape,
};
