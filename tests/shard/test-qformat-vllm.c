/* SPDX-License-Identifier: MIT
 * test-qformat-vllm.c - the Marlin shard rules of qd-vllm-rules.h on hand-worked cases
 * (Llama-2-7B-like shapes at tp 1/2/4/8 and the fixture's 172-wide MLP). */
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

int main(void) {
    QD_RUN(test_llama7b);
    QD_RUN(test_schemes);
    return QD_TEST_END();
}
