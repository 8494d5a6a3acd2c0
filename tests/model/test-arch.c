/* SPDX-License-Identifier: MIT
 * test-arch.c - the architecture tables (src/model/qd-arch.h): which class names select which
 * architecture, the tensors a block of each holds for a config, and each Linear's shape.
 */
#include <stdio.h>
#include <string.h>

#include "qd-arch.h"
#include "qd-test.h"

/* a small config of architecture arch with extra fields (",\"k\":v" or "") */
static void parse(const char *arch, const char *extra, qd_model_cfg *c) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"architectures\":[\"%s\"],\"hidden_size\":64,\"intermediate_size\":96,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":24,\"vocab_size\":100%s}",
             arch, extra);
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(json, "config.json", c), QD_OK);
}

/* does block b of cfg hold the tensor named suffix (and is it of role/slot)? */
static int holds_in(const qd_model_cfg *c, int b, const char *suffix, qd_tensor_role role, int slot) {
    qd_block_tensor_ref t[64];
    size_t n = qd_model_block_tensors(c, b, t, 64);
    QD_EXPECT(n <= 64);
    for (size_t i = 0; i < n && i < 64; i++)
        if (strcmp(t[i].suffix, suffix) == 0) return t[i].role == role && t[i].slot == slot;
    return 0;
}

static int holds(const qd_model_cfg *c, const char *suffix, qd_tensor_role role, int slot) {
    return holds_in(c, 0, suffix, role, slot);
}

static void test_lookup(void) {
    char list[256];
    qd_arch_supported_list(list, sizeof list);
    QD_EXPECT(strcmp(list, "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
                           "MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, DeepseekV3ForCausalLM") == 0);
    QD_EXPECT(qd_arch_find("Qwen2ForCausalLM") == &qd_arch_qwen2);
    QD_EXPECT(qd_arch_find("MixtralForCausalLM") == &qd_arch_mixtral);
    QD_EXPECT(qd_arch_find("DeepseekV3ForCausalLM") == &qd_arch_deepseek_v3);
    QD_EXPECT(qd_arch_find("DeepseekV2ForCausalLM") == NULL);
    QD_EXPECT(qd_arch_by_model_type("mistral") == &qd_arch_mistral);
    QD_EXPECT(qd_arch_by_model_type("gpt2") == NULL);
    qd_arch_supported_list(list, 20); /* cut, never overrun */
    QD_EXPECT_EQ_INT((int)strlen(list), 19);
}

static void test_shapes(void) {
    qd_model_cfg c;
    parse("LlamaForCausalLM", "", &c);
    const int64_t want[QD_NLIN][2] = {{96, 64}, {48, 64}, {48, 64}, {64, 96}, {96, 64}, {96, 64}, {64, 96}};
    for (int l = 0; l < QD_NLIN; l++) {
        int64_t N = 0, K = 0;
        qd_model_linear_shape(&c, (qd_lin)l, &N, &K);
        QD_EXPECT(N == want[l][0] && K == want[l][1]);
        /* each Linear's weight is in the table under its module name */
        char w[64];
        snprintf(w, sizeof w, "%s.weight", qd_lin_name((qd_lin)l));
        QD_EXPECT(holds(&c, w, QD_T_LINEAR_W, l));
    }
    char fields[96];
    int64_t N, K;
    c.arch->linear_shape(&c, QD_LIN_K, &N, &K, fields, sizeof fields);
    QD_EXPECT(strcmp(fields, "num_key_value_heads=2, head_dim=24, hidden_size=64") == 0);
    QD_EXPECT_EQ_INT((int)qd_model_norm_size(&c, QD_NORM_Q), 24);
    QD_EXPECT_EQ_INT((int)qd_model_norm_size(&c, QD_NORM_POST), 64);
}

static void test_tensors(void) {
    qd_model_cfg c;
    parse("LlamaForCausalLM", "", &c);
    QD_EXPECT(!holds(&c, "self_attn.q_proj.bias", QD_T_LINEAR_B, QD_LIN_Q));
    QD_EXPECT(holds(&c, "input_layernorm.weight", QD_T_NORM, QD_NORM_IN));
    QD_EXPECT(!holds(&c, "self_attn.q_norm.weight", QD_T_NORM, QD_NORM_Q));
    parse("LlamaForCausalLM", ",\"attention_bias\":true,\"mlp_bias\":true", &c);
    QD_EXPECT(holds(&c, "self_attn.o_proj.bias", QD_T_LINEAR_B, QD_LIN_O));
    QD_EXPECT(holds(&c, "mlp.down_proj.bias", QD_T_LINEAR_B, QD_LIN_DOWN));
    parse("MistralForCausalLM", ",\"attention_bias\":true", &c); /* Mistral has no biases */
    QD_EXPECT(!holds(&c, "self_attn.q_proj.bias", QD_T_LINEAR_B, QD_LIN_Q));
    parse("Qwen2ForCausalLM", "", &c);
    QD_EXPECT(holds(&c, "self_attn.v_proj.bias", QD_T_LINEAR_B, QD_LIN_V));
    QD_EXPECT(!holds(&c, "self_attn.o_proj.bias", QD_T_LINEAR_B, QD_LIN_O));
    parse("Qwen3ForCausalLM", "", &c);
    QD_EXPECT(holds(&c, "self_attn.k_norm.weight", QD_T_NORM, QD_NORM_K));
    QD_EXPECT(!holds(&c, "self_attn.q_proj.bias", QD_T_LINEAR_B, QD_LIN_Q));
    parse("Qwen3ForCausalLM", ",\"attention_bias\":true", &c);
    QD_EXPECT(holds(&c, "self_attn.o_proj.bias", QD_T_LINEAR_B, QD_LIN_O));
    QD_EXPECT(!holds(&c, "mlp.up_proj.bias", QD_T_LINEAR_B, QD_LIN_UP));
}

/* the Linear table and tensors of MoE blocks: names, shapes, keys, the router kept in full precision */
static void test_moe(void) {
    qd_model_cfg c;
    parse("MixtralForCausalLM", ",\"num_local_experts\":4,\"num_experts_per_tok\":2", &c);
    qd_linear t[32];
    QD_EXPECT_EQ_INT(qd_model_linears(&c, 1, t, 32), 4 + 1 + 3 * 4);
    QD_EXPECT(strcmp(t[4].module, "block_sparse_moe.gate") == 0 && !t[4].quantize && t[4].N == 4 && t[4].K == 64);
    QD_EXPECT(strcmp(t[5].module, "block_sparse_moe.experts.0.w1") == 0 && t[5].hkey == 4 && t[5].stage == 2);
    QD_EXPECT(strcmp(t[6].module, "block_sparse_moe.experts.0.w3") == 0 && t[6].hkey == 4 && t[6].N == 96);
    QD_EXPECT(strcmp(t[7].module, "block_sparse_moe.experts.0.w2") == 0 && t[7].hkey == 5 && t[7].K == 96);
    QD_EXPECT(strcmp(t[16].module, "block_sparse_moe.experts.3.w2") == 0 && t[16].expert == 3 && t[16].stage == 3);
    QD_EXPECT(holds(&c, "block_sparse_moe.experts.2.w3.weight", QD_T_LINEAR_W, 4 + 1 + 3 * 2 + 1));
    QD_EXPECT(!holds(&c, "mlp.gate_proj.weight", QD_T_LINEAR_W, QD_LIN_GATE));
    QD_EXPECT_EQ_INT(qd_model_max_hkeys(&c), 4 + 2 * 4);
    /* Qwen2-MoE: a shared expert; block 1 dense (mlp_only_layers), so its table is the dense one */
    parse("Qwen2MoeForCausalLM", ",\"num_experts\":2,\"moe_intermediate_size\":32,"
          "\"shared_expert_intermediate_size\":48,\"mlp_only_layers\":[1]", &c);
    QD_EXPECT(qd_model_block_is_moe(&c, 0) && !qd_model_block_is_moe(&c, 1));
    QD_EXPECT_EQ_INT(qd_model_linears(&c, 1, t, 32), QD_NLIN);
    QD_EXPECT(strcmp(t[QD_LIN_DOWN].module, "mlp.down_proj") == 0 && t[QD_LIN_DOWN].K == 96);
    QD_EXPECT_EQ_INT(qd_model_linears(&c, 0, t, 32), 4 + 1 + 4 + 3 * 2);
    QD_EXPECT(strcmp(t[5].module, "mlp.shared_expert.gate_proj") == 0 && t[5].hkey == 2 && t[5].N == 48);
    QD_EXPECT(strcmp(t[7].module, "mlp.shared_expert.down_proj") == 0 && t[7].hkey == 3 && t[7].K == 48);
    QD_EXPECT(strcmp(t[8].module, "mlp.shared_expert_gate") == 0 && !t[8].quantize && t[8].N == 1);
    QD_EXPECT(strcmp(t[9].module, "mlp.experts.0.gate_proj") == 0 && t[9].N == 32);
    QD_EXPECT(holds(&c, "self_attn.q_proj.bias", QD_T_LINEAR_B, QD_LIN_Q)); /* qkv_bias defaults on */
    QD_EXPECT(holds_in(&c, 1, "mlp.up_proj.weight", QD_T_LINEAR_W, QD_LIN_UP));
    QD_EXPECT(!holds_in(&c, 1, "mlp.experts.0.up_proj.weight", QD_T_LINEAR_W, 10));
    /* Qwen3-MoE: decoder_sparse_step 2 makes every other block dense */
    parse("Qwen3MoeForCausalLM", ",\"num_experts\":2,\"moe_intermediate_size\":32,\"decoder_sparse_step\":2", &c);
    QD_EXPECT(!qd_model_block_is_moe(&c, 0) && qd_model_block_is_moe(&c, 1));
    QD_EXPECT(holds(&c, "self_attn.q_norm.weight", QD_T_NORM, QD_NORM_Q));
    QD_EXPECT(holds_in(&c, 1, "mlp.gate.weight", QD_T_LINEAR_W, 4));
}

/* DeepSeek-V3: MLA Linears in three true-sequential stages, the dense first block, the MoE block's shared
 * experts as one MLP and its router bias; q_lora_rank null gives q_proj */
static void test_deepseek(void) {
    qd_model_cfg c;
    const char *dsv3 = ",\"kv_lora_rank\":32,\"qk_nope_head_dim\":8,\"qk_rope_head_dim\":4,"
                       "\"v_head_dim\":12,\"n_routed_experts\":4,\"n_group\":2,\"topk_group\":1,"
                       "\"num_experts_per_tok\":2,\"n_shared_experts\":2,\"moe_intermediate_size\":20,"
                       "\"first_k_dense_replace\":1,\"num_nextn_predict_layers\":1";
    char extra[512];
    snprintf(extra, sizeof extra, "%s,\"q_lora_rank\":16", dsv3);
    parse("DeepseekV3ForCausalLM", extra, &c);
    QD_EXPECT(c.mla && c.mtp_layers == 1 && c.head_dim == 4);
    QD_EXPECT(!qd_model_block_is_moe(&c, 0) && qd_model_block_is_moe(&c, 1));
    QD_EXPECT_EQ_INT(qd_model_nstages(&c), 5);
    qd_linear t[32];
    QD_EXPECT_EQ_INT(qd_model_linears(&c, 0, t, 32), 5 + 3);
    QD_EXPECT(strcmp(t[0].module, "self_attn.q_a_proj") == 0 && t[0].N == 16 && t[0].K == 64 && t[0].stage == 0);
    QD_EXPECT(strcmp(t[1].module, "self_attn.kv_a_proj_with_mqa") == 0 && t[1].N == 36 && t[1].hkey == 0);
    QD_EXPECT(strcmp(t[2].module, "self_attn.q_b_proj") == 0 && t[2].N == 4 * 12 && t[2].K == 16 && t[2].hkey == 1);
    QD_EXPECT(strcmp(t[3].module, "self_attn.kv_b_proj") == 0 && t[3].N == 4 * 20 && t[3].K == 32 &&
              t[3].stage == 1 && t[3].hkey == 2);
    QD_EXPECT(strcmp(t[4].module, "self_attn.o_proj") == 0 && t[4].K == 4 * 12 && t[4].stage == 2 && t[4].hkey == 3);
    QD_EXPECT(strcmp(t[7].module, "mlp.down_proj") == 0 && t[7].K == 96 && t[7].stage == 4 && t[7].hkey == 5);
    QD_EXPECT_EQ_INT(qd_model_linears(&c, 1, t, 32), 5 + 1 + 3 + 3 * 4);
    QD_EXPECT(strcmp(t[5].module, "mlp.gate") == 0 && !t[5].quantize && t[5].N == 4 && t[5].stage == 3);
    QD_EXPECT(strcmp(t[6].module, "mlp.shared_experts.gate_proj") == 0 && t[6].N == 40 && t[6].hkey == 4);
    QD_EXPECT(strcmp(t[8].module, "mlp.shared_experts.down_proj") == 0 && t[8].K == 40 && t[8].hkey == 5);
    QD_EXPECT(strcmp(t[9].module, "mlp.experts.0.gate_proj") == 0 && t[9].N == 20 && t[9].hkey == 6);
    QD_EXPECT(strcmp(t[20].module, "mlp.experts.3.down_proj") == 0 && t[20].hkey == 13 && t[20].stage == 4);
    QD_EXPECT_EQ_INT(qd_model_max_hkeys(&c), 4 + 2 + 2 * 4);
    QD_EXPECT(holds_in(&c, 1, "mlp.gate.e_score_correction_bias", QD_T_NORM, QD_NORM_EBIAS));
    QD_EXPECT(!holds_in(&c, 0, "mlp.gate.e_score_correction_bias", QD_T_NORM, QD_NORM_EBIAS));
    QD_EXPECT(holds(&c, "self_attn.q_a_layernorm.weight", QD_T_NORM, QD_NORM_Q_A));
    QD_EXPECT(holds(&c, "self_attn.kv_b_proj.weight", QD_T_LINEAR_W, 3));
    QD_EXPECT_EQ_INT((int)qd_model_norm_size(&c, QD_NORM_KV_A), 32);
    snprintf(extra, sizeof extra, "%s,\"q_lora_rank\":null", dsv3);
    parse("DeepseekV3ForCausalLM", extra, &c);
    QD_EXPECT_EQ_INT(qd_model_linears(&c, 0, t, 32), 4 + 3);
    QD_EXPECT(strcmp(t[0].module, "self_attn.q_proj") == 0 && t[0].N == 4 * 12 && t[0].K == 64);
    QD_EXPECT(!holds(&c, "self_attn.q_a_layernorm.weight", QD_T_NORM, QD_NORM_Q_A));
}

int main(void) {
    QD_RUN(test_lookup);
    QD_RUN(test_moe);
    QD_RUN(test_deepseek);
    QD_RUN(test_shapes);
    QD_RUN(test_tensors);
    return QD_TEST_END();
}
