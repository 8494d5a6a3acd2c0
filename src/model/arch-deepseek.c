/* SPDX-License-Identifier: MIT
 * arch-deepseek.c - DeepseekV3ForCausalLM (transformers' modeling_deepseek_v3): MLA attention
 * (src/forward/mla.c) and, after first_k_dense_replace dense blocks, an MoE MLP of n_routed_experts
 * SwiGLU experts of moe_intermediate_size, n_shared_experts shared experts as one MLP
 * mlp.shared_experts.* of n_shared * moe_intermediate_size, the router mlp.gate with its
 * e_score_correction_bias (sigmoid, group-limited top-k: src/forward/route-dsv3.c). Every Linear's
 * tensor comes from the block's Linear table (linears.c); this table holds the norms. The multi-token
 * prediction blocks model.layers.<num_hidden_layers + i>.* are not part of the decoder: they are
 * passed through unquantized.
 */
#include "qd-arch.h"
#include "qd-check.h"
#include "qd-dsv3.h"
#include "qd-log.h"
#include "qd-model-json.h"

#include <stdio.h>

#include <cjson/cJSON.h>

static int has_q_lora(const qd_model_cfg *c) { return c->dsv3.q_lora_rank > 0; }

static const struct qd_block_tensor dsv3_tensors[] = {
    {"input_layernorm.weight", QD_T_NORM, QD_NORM_IN, NULL},
    {"post_attention_layernorm.weight", QD_T_NORM, QD_NORM_POST, NULL},
    {"self_attn.q_a_layernorm.weight", QD_T_NORM, QD_NORM_Q_A, has_q_lora},
    {"self_attn.kv_a_layernorm.weight", QD_T_NORM, QD_NORM_KV_A, NULL},
};

static qd_status dsv3_flags(const cJSON *root, const char *path, qd_model_cfg *c) {
    int bias = 0;
    QD_CHECK(qd_cfg_bool(root, "attention_bias", 0, path, &bias));
    if (bias)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: \"attention_bias\" true is not supported for DeepseekV3ForCausalLM "
                       "(released DeepSeek-V3 checkpoints have none)", path);
    QD_CHECK(qd_dsv3_cfg_read(root, path, c, &c->dsv3));
    const qd_dsv3_cfg *d = &c->dsv3;
    c->mla = 1;
    c->head_dim = d->qk_rope_head_dim; /* the rope tables' width (transformers sets head_dim so) */
    c->moe_experts = d->n_routed_experts;
    c->moe_topk = d->num_experts_per_tok;
    c->moe_inter = d->moe_intermediate_size;
    c->moe_shared_inter = d->n_shared_experts * d->moe_intermediate_size;
    c->moe_norm_topk = d->norm_topk_prob;
    c->moe_sparse_step = 1;
    for (int b = 0; b < d->first_k_dense_replace && b < c->nlayers; b++)
        c->moe_mlp_only[b / 8] |= (unsigned char)(1u << (b % 8));
    const cJSON *mtp = cJSON_GetObjectItemCaseSensitive(root, "num_nextn_predict_layers");
    c->mtp_layers = 0;
    if (mtp && !cJSON_IsNull(mtp) && !(cJSON_IsNumber(mtp) && mtp->valuedouble == 0))
        QD_CHECK(qd_cfg_int(root, "num_nextn_predict_layers", 0, path, &c->mtp_layers));
    if (c->mtp_layers > 64)
        return qd_fail(QD_ERR_FORMAT, "%s: \"num_nextn_predict_layers\" is %d; expected at most 64", path,
                       c->mtp_layers);
    return QD_OK;
}

static void dsv3_shape(const qd_model_cfg *c, qd_lin lin, int64_t *N, int64_t *K, char *fields, size_t cap) {
    const qd_dsv3_cfg *d = &c->dsv3;
    const int64_t H = c->hidden, nh = c->nheads, QK = d->qk_head_dim, R = d->qk_rope_head_dim;
    int64_t n = H, k = H;
    const char *f = "hidden_size";
    switch (lin) {
    case QD_LIN_Q: n = nh * QK, f = "num_attention_heads * qk_head_dim, hidden_size"; break;
    case QD_LIN_Q_A: n = d->q_lora_rank, f = "q_lora_rank, hidden_size"; break;
    case QD_LIN_Q_B: n = nh * QK, k = d->q_lora_rank, f = "num_attention_heads * qk_head_dim, q_lora_rank"; break;
    case QD_LIN_K:
    case QD_LIN_KV_A: n = d->kv_lora_rank + R, f = "kv_lora_rank + qk_rope_head_dim, hidden_size"; break;
    case QD_LIN_V:
    case QD_LIN_KV_B:
        n = nh * (d->qk_nope_head_dim + d->v_head_dim), k = d->kv_lora_rank;
        f = "num_attention_heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank";
        break;
    case QD_LIN_O: k = nh * d->v_head_dim, f = "hidden_size, num_attention_heads * v_head_dim"; break;
    case QD_LIN_GATE:
    case QD_LIN_UP: n = c->intermediate, f = "intermediate_size, hidden_size"; break;
    case QD_LIN_DOWN: k = c->intermediate, f = "hidden_size, intermediate_size"; break;
    case QD_LIN_ROUTER: n = c->moe_experts, f = "n_routed_experts, hidden_size"; break;
    case QD_LIN_EXP_GATE:
    case QD_LIN_EXP_UP: n = c->moe_inter, f = "moe_intermediate_size, hidden_size"; break;
    case QD_LIN_EXP_DOWN: k = c->moe_inter, f = "hidden_size, moe_intermediate_size"; break;
    case QD_LIN_SH_GATE:
    case QD_LIN_SH_UP: n = c->moe_shared_inter, f = "n_shared_experts * moe_intermediate_size, hidden_size"; break;
    case QD_LIN_SH_DOWN: k = c->moe_shared_inter, f = "hidden_size, n_shared_experts * moe_intermediate_size"; break;
    default: break;
    }
    if (N) *N = n;
    if (K) *K = k;
    if (fields && cap) snprintf(fields, cap, "%s = %lld, %lld", f, (long long)n, (long long)k);
}

const struct qd_arch qd_arch_deepseek_v3 = {
    .name = "DeepseekV3ForCausalLM", .model_type = "deepseek_v3", .read_flags = dsv3_flags,
    .tensors = dsv3_tensors, .ntensors = sizeof dsv3_tensors / sizeof dsv3_tensors[0], .moe = 1,
    .linear_shape = dsv3_shape,
};
