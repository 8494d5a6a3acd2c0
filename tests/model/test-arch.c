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

/* does a block of cfg hold the tensor named suffix (and is it of role/slot)? */
static int holds(const qd_model_cfg *c, const char *suffix, qd_tensor_role role, int slot) {
    for (size_t i = 0; i < c->arch->ntensors; i++) {
        const struct qd_block_tensor *t = &c->arch->tensors[i];
        if (strcmp(t->suffix, suffix) != 0) continue;
        if (t->present && !t->present(c)) return 0;
        return t->role == role && t->slot == slot;
    }
    return 0;
}

static void test_lookup(void) {
    char list[256];
    qd_arch_supported_list(list, sizeof list);
    QD_EXPECT(strcmp(list, "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM") == 0);
    QD_EXPECT(qd_arch_find("Qwen2ForCausalLM") == &qd_arch_qwen2);
    QD_EXPECT(qd_arch_find("MixtralForCausalLM") == NULL);
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

int main(void) {
    QD_RUN(test_lookup);
    QD_RUN(test_shapes);
    QD_RUN(test_tensors);
    return QD_TEST_END();
}
