/* SPDX-License-Identifier: MIT
 * test-qformat-vllm.c - the Marlin shard rules of qd-vllm-rules.h on hand-worked cases
 * (Llama-2-7B-like shapes at tp 1/2/4/8 and the fixture's 172-wide MLP). */
#include <string.h>

#include "qd-test.h"
#include "qd-vllm-rules.h"

static qd_qlinear_info layer(long N, long K, int bits, int gs, int sym) {
    qd_qlinear_info i = {.quantized = 1, .N = N, .K = K, .bits = bits, .group_size = gs, .sym = sym};
    return i;
}

static void test_llama7b(void) {
    qd_vllm_verdict v;
    qd_qlinear_info q = layer(4096, 4096, 4, 128, 1), down = layer(4096, 11008, 4, 128, 1);
    QD_EXPECT_EQ_INT(qd_vllm_check(QD_QF_GPTQ, "model.layers.0.self_attn.q_proj", &q, 8, &v), QD_OK);
    QD_EXPECT(v.marlin && !v.row_parallel && v.N_part == 512 && v.K_part == 4096);
    /* 11008 / 2 = 5504 = 43 * 128: Marlin; / 4 = 2752 (not % 128): gptq kernel, 2752 % 128 group fails too */
    QD_EXPECT_EQ_INT(qd_vllm_check(QD_QF_GPTQ, "model.layers.0.mlp.down_proj", &down, 2, &v), QD_OK);
    QD_EXPECT(v.marlin && v.row_parallel && v.K_part == 5504);
    QD_EXPECT_EQ_INT(qd_vllm_check(QD_QF_GPTQ, "model.layers.0.mlp.down_proj", &down, 4, &v), QD_OK);
    QD_EXPECT(!v.marlin && !v.loadable);
    QD_EXPECT_STR_CONTAINS(v.reason, "multiple of 128");
    QD_EXPECT_STR_CONTAINS(v.reason, "does not load");
    qd_qlinear_info down64 = layer(4096, 11008, 4, 64, 1);
    QD_EXPECT_EQ_INT(qd_vllm_check(QD_QF_GPTQ, "model.layers.0.mlp.down_proj", &down64, 4, &v), QD_OK);
    QD_EXPECT(!v.marlin && v.loadable && strcmp(v.kernel, "gptq") == 0);
}

static void test_schemes(void) {
    qd_vllm_verdict v;
    qd_qlinear_info asym = layer(4096, 4096, 4, 128, 0);
    QD_EXPECT_EQ_INT(qd_vllm_check(QD_QF_GPTQ, "x.q_proj", &asym, 1, &v), QD_OK);
    QD_EXPECT(!v.marlin && v.loadable && strcmp(v.kernel, "gptq") == 0);
    QD_EXPECT_EQ_INT(qd_vllm_check(QD_QF_AWQ, "x.q_proj", &asym, 1, &v), QD_OK);
    QD_EXPECT(v.marlin && strcmp(v.kernel, "awq_marlin") == 0);
    qd_qlinear_info w3 = layer(4096, 4096, 3, 128, 1);
    QD_EXPECT_EQ_INT(qd_vllm_check(QD_QF_GPTQ, "x.q_proj", &w3, 1, &v), QD_OK);
    QD_EXPECT(!v.marlin);
    qd_qlinear_info fix = layer(172, 64, 4, -1, 1);
    QD_EXPECT_EQ_INT(qd_vllm_check(QD_QF_CT, "model.layers.0.mlp.gate_proj", &fix, 1, &v), QD_OK);
    QD_EXPECT(!v.marlin && v.loadable);
    QD_EXPECT_STR_CONTAINS(v.reason, "N per shard = 172");
    QD_EXPECT_EQ_INT(qd_vllm_check(QD_QF_CT, "model.layers.0.mlp.gate_proj", &fix, 8, &v), QD_OK);
    QD_EXPECT(!v.loadable);
    QD_EXPECT_STR_CONTAINS(v.reason, "not divisible by tp = 8");
    QD_EXPECT_EQ_INT(qd_vllm_check(QD_QF_CT, "x", &fix, 0, &v), QD_ERR_USAGE);
}

/* Qwen3-30B-A3B experts (H 2048, I 768, GPTQ 4-bit g128), worked by hand from vLLM's
 * check_moe_marlin_supports_layer (H % 128, I/tp % max(64, g)) and moe_wna16's group halving (>= 32) */
static void test_moe_experts(void) {
    qd_vllm_verdict v;
    const char *up = "model.layers.3.mlp.experts.17.up_proj", *down = "model.layers.3.mlp.experts.17.down_proj";
    qd_qlinear_info gu = layer(768, 2048, 4, 128, 1), dn = layer(2048, 768, 4, 128, 1);
    QD_EXPECT(qd_vllm_role_of(up) == QD_VLLM_EXPERT_W13 && qd_vllm_role_of(down) == QD_VLLM_EXPERT_W2);
    QD_EXPECT(qd_vllm_role_of("model.layers.0.block_sparse_moe.experts.0.w2") == QD_VLLM_EXPERT_W2);
    QD_EXPECT(qd_vllm_role_of("model.layers.0.mlp.shared_experts.down_proj") == QD_VLLM_DENSE);
    QD_EXPECT(qd_vllm_role_of("model.layers.0.mlp.shared_expert.up_proj") == QD_VLLM_DENSE);
    QD_EXPECT(qd_vllm_role_of("model.layers.0.mlp.gate") == QD_VLLM_ROUTER);
    QD_EXPECT(qd_vllm_role_of("model.layers.0.mlp.shared_expert_gate") == QD_VLLM_ROUTER);
    QD_EXPECT(qd_vllm_role_of("model.layers.0.mlp.gate_proj") == QD_VLLM_DENSE);
    /* tp 2: 384 % 128 == 0, Marlin MoE; w2's K (I) is the split one */
    QD_EXPECT_EQ_INT(qd_vllm_check_expert(QD_QF_GPTQ, down, &dn, 2, 0, &v), QD_OK);
    QD_EXPECT(v.marlin && v.row_parallel && v.K_part == 384 && v.N_part == 2048);
    QD_EXPECT_EQ_INT(qd_vllm_check_expert(QD_QF_GPTQ, up, &gu, 2, 0, &v), QD_OK);
    QD_EXPECT(v.marlin && !v.row_parallel && v.N_part == 384 && v.K_part == 2048);
    /* tp 4: 192 % 128 != 0 -> moe_wna16, group 64 divides 192 and 2048: loads */
    QD_EXPECT_EQ_INT(qd_vllm_check_expert(QD_QF_GPTQ, down, &dn, 4, 0, &v), QD_OK);
    QD_EXPECT(!v.marlin && v.loadable && strcmp(v.kernel, "moe_wna16") == 0);
    QD_EXPECT_STR_CONTAINS(v.reason, "I per shard = 192 is not a multiple of 128");
    /* tp 16: 48, no group >= 32 divides it: does not load; with expert parallelism 768 stays whole */
    QD_EXPECT_EQ_INT(qd_vllm_check_expert(QD_QF_GPTQ, down, &dn, 16, 0, &v), QD_OK);
    QD_EXPECT(!v.marlin && !v.loadable);
    QD_EXPECT_EQ_INT(qd_vllm_check_expert(QD_QF_GPTQ, down, &dn, 16, 1, &v), QD_OK);
    QD_EXPECT(v.marlin && v.K_part == 768);
    /* compressed-tensors Triton fallback: I per shard % group; 7 does not divide 768 */
    QD_EXPECT_EQ_INT(qd_vllm_check_expert(QD_QF_CT, down, &dn, 4, 0, &v), QD_OK);
    QD_EXPECT(!v.marlin && !v.loadable && strcmp(v.kernel, "triton wNa16 moe") == 0);
    QD_EXPECT_EQ_INT(qd_vllm_check_expert(QD_QF_CT, down, &dn, 7, 0, &v), QD_OK);
    QD_EXPECT(!v.loadable);
    QD_EXPECT_STR_CONTAINS(v.reason, "not divisible by tp = 7");
    QD_EXPECT_EQ_INT(qd_vllm_check_expert(QD_QF_GPTQ, "model.layers.0.mlp.gate", &dn, 2, 0, &v), QD_ERR_USAGE);
}

int main(void) {
    QD_RUN(test_llama7b);
    QD_RUN(test_schemes);
    QD_RUN(test_moe_experts);
    return QD_TEST_END();
}
