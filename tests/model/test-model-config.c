/* SPDX-License-Identifier: MIT
 * config.json parsing: one config per supported architecture written the way the hub writes them
 * (values from the public configs of Llama-3.1-8B, Mistral-7B-v0.1, Qwen2.5-0.5B, Qwen3-0.6B),
 * the newer rope_parameters form, MoE and unknown architectures, missing and invalid fields, a
 * missing config.json and one that is not JSON. Also the tensor-name classification.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qd-fs.h"
#include "qd-log.h"
#include "qd-arch.h"
#include "qd-test.h"

static const char llama31[] =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":128000,\"eos_token_id\":128001,\"hidden_act\":\"silu\",\"hidden_size\":4096,"
    "\"initializer_range\":0.02,\"intermediate_size\":14336,\"max_position_embeddings\":131072,"
    "\"mlp_bias\":false,\"model_type\":\"llama\",\"num_attention_heads\":32,\"num_hidden_layers\":32,"
    "\"num_key_value_heads\":8,\"pretraining_tp\":1,\"rms_norm_eps\":1e-05,"
    "\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
    "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},\"rope_theta\":500000.0,"
    "\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.43.0.dev0\","
    "\"use_cache\":true,\"vocab_size\":128256}";

static const char mistral[] =
    "{\"architectures\":[\"MistralForCausalLM\"],\"bos_token_id\":1,\"eos_token_id\":2,\"hidden_act\":\"silu\","
    "\"hidden_size\":4096,\"initializer_range\":0.02,\"intermediate_size\":14336,\"max_position_embeddings\":32768,"
    "\"model_type\":\"mistral\",\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,"
    "\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,\"sliding_window\":4096,\"tie_word_embeddings\":false,"
    "\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.34.0.dev0\",\"use_cache\":true,\"vocab_size\":32000}";

static const char qwen2[] =
    "{\"architectures\":[\"Qwen2ForCausalLM\"],\"attention_dropout\":0.0,\"bos_token_id\":151643,"
    "\"eos_token_id\":151643,\"hidden_act\":\"silu\",\"hidden_size\":896,\"initializer_range\":0.02,"
    "\"intermediate_size\":4864,\"max_position_embeddings\":32768,\"max_window_layers\":24,\"model_type\":\"qwen2\","
    "\"num_attention_heads\":14,\"num_hidden_layers\":24,\"num_key_value_heads\":2,\"rms_norm_eps\":1e-06,"
    "\"rope_theta\":1000000.0,\"sliding_window\":32768,\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\","
    "\"transformers_version\":\"4.40.1\",\"use_cache\":true,\"use_sliding_window\":false,\"vocab_size\":151936}";

static const char qwen3[] =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":151643,\"eos_token_id\":151645,\"head_dim\":128,\"hidden_act\":\"silu\",\"hidden_size\":1024,"
    "\"initializer_range\":0.02,\"intermediate_size\":3072,\"max_position_embeddings\":40960,\"max_window_layers\":28,"
    "\"model_type\":\"qwen3\",\"num_attention_heads\":16,\"num_hidden_layers\":28,\"num_key_value_heads\":8,"
    "\"rms_norm_eps\":1e-06,\"rope_scaling\":null,\"rope_theta\":1000000,\"sliding_window\":null,"
    "\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.51.0\",\"use_cache\":true,"
    "\"use_sliding_window\":false,\"vocab_size\":151936}";

/* transformers >= 4.56 / 5.x: rope settings inside rope_parameters, "dtype" instead of torch_dtype */
static const char llama_rope_params[] =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":2048,\"intermediate_size\":8192,"
    "\"num_hidden_layers\":16,\"num_attention_heads\":32,\"num_key_value_heads\":8,\"head_dim\":64,"
    "\"vocab_size\":128256,\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-05,\"dtype\":\"float16\","
    "\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,\"factor\":32.0,\"low_freq_factor\":1.0,"
    "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192},\"tie_word_embeddings\":true,"
    "\"eos_token_id\":[128001,128008,128009]}";

static const char qwen3_rope_params[] =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":1024,\"intermediate_size\":3072,"
    "\"num_hidden_layers\":28,\"num_attention_heads\":16,\"num_key_value_heads\":8,\"head_dim\":128,"
    "\"vocab_size\":151936,\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":1000000.0},"
    "\"dtype\":\"bfloat16\",\"attention_bias\":true}";

static void test_llama(void) {
    qd_model_cfg c;
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(llama31, "llama/config.json", &c), QD_OK);
    QD_EXPECT(c.arch == &qd_arch_llama);
    QD_EXPECT(strcmp(c.arch_name, "LlamaForCausalLM") == 0 && strcmp(c.model_type, "llama") == 0);
    QD_EXPECT_EQ_INT(c.hidden, 4096);
    QD_EXPECT_EQ_INT(c.intermediate, 14336);
    QD_EXPECT_EQ_INT(c.nlayers, 32);
    QD_EXPECT_EQ_INT(c.nheads, 32);
    QD_EXPECT_EQ_INT(c.nkv, 8);
    QD_EXPECT_EQ_INT(c.head_dim, 128);
    QD_EXPECT_EQ_INT(c.vocab, 128256);
    QD_EXPECT_EQ_INT(c.max_pos, 131072);
    QD_EXPECT_NEAR(c.rms_eps, 1e-5, 0);
    QD_EXPECT_NEAR(c.rope.theta, 500000.0, 0);
    QD_EXPECT_EQ_INT(c.rope.type, QD_ROPE_LLAMA3);
    QD_EXPECT_NEAR(c.rope.factor, 8.0, 0);
    QD_EXPECT_NEAR(c.rope.low_freq_factor, 1.0, 0);
    QD_EXPECT_NEAR(c.rope.high_freq_factor, 4.0, 0);
    QD_EXPECT_EQ_INT(c.rope.original_max_pos, 8192);
    QD_EXPECT_EQ_INT(c.tie_embed, 0);
    QD_EXPECT_EQ_INT(c.attn_bias, 0);
    QD_EXPECT_EQ_INT(c.qk_norm, 0);
    QD_EXPECT_EQ_INT(c.dtype, QD_DT_BF16);
    QD_EXPECT_EQ_INT(c.bos_id, 128000);
    QD_EXPECT_EQ_INT(c.eos_id, 128001);
    QD_EXPECT_EQ_INT(c.quantized, 0);
}

static void test_mistral(void) {
    qd_model_cfg c;
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(mistral, "mistral/config.json", &c), QD_OK);
    QD_EXPECT(c.arch == &qd_arch_mistral);
    QD_EXPECT_EQ_INT(c.head_dim, 128);
    QD_EXPECT_EQ_INT(c.sliding_window, 4096);
    QD_EXPECT_EQ_INT(c.rope.type, QD_ROPE_DEFAULT);
    QD_EXPECT_NEAR(c.rope.theta, 10000.0, 0);
    QD_EXPECT_EQ_INT(c.attn_bias, 0);
}

static void test_qwen2(void) {
    qd_model_cfg c;
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(qwen2, "qwen2/config.json", &c), QD_OK);
    QD_EXPECT(c.arch == &qd_arch_qwen2);
    QD_EXPECT_EQ_INT(c.hidden, 896);
    QD_EXPECT_EQ_INT(c.nheads, 14);
    QD_EXPECT_EQ_INT(c.nkv, 2);
    QD_EXPECT_EQ_INT(c.head_dim, 64);
    QD_EXPECT_EQ_INT(c.attn_bias, 1); /* Qwen2 q/k/v always have a bias */
    QD_EXPECT_EQ_INT(c.o_bias, 0);
    QD_EXPECT_EQ_INT(c.tie_embed, 1);
    QD_EXPECT_EQ_INT(c.sliding_window, 0); /* use_sliding_window false */
    QD_EXPECT_NEAR(c.rope.theta, 1e6, 0);
    QD_EXPECT_NEAR(c.rms_eps, 1e-6, 0);
}

static void test_qwen3(void) {
    qd_model_cfg c;
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(qwen3, "qwen3/config.json", &c), QD_OK);
    QD_EXPECT(c.arch == &qd_arch_qwen3);
    QD_EXPECT_EQ_INT(c.head_dim, 128); /* explicit, not hidden/heads = 64 */
    QD_EXPECT_EQ_INT(c.qk_norm, 1);
    QD_EXPECT_EQ_INT(c.attn_bias, 0);
    QD_EXPECT_EQ_INT(c.eos_id, 151645);
    QD_EXPECT_EQ_INT(c.rope.type, QD_ROPE_DEFAULT);
}

static void test_rope_parameters(void) {
    qd_model_cfg c;
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(llama_rope_params, "lp/config.json", &c), QD_OK);
    QD_EXPECT_EQ_INT(c.rope.type, QD_ROPE_LLAMA3);
    QD_EXPECT_NEAR(c.rope.theta, 500000.0, 0);
    QD_EXPECT_NEAR(c.rope.factor, 32.0, 0);
    QD_EXPECT_EQ_INT(c.rope.original_max_pos, 8192);
    QD_EXPECT_EQ_INT(c.dtype, QD_DT_F16);
    QD_EXPECT_EQ_INT(c.eos_id, 128001);
    QD_EXPECT_EQ_INT(c.tie_embed, 1);
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(qwen3_rope_params, "qp/config.json", &c), QD_OK);
    QD_EXPECT_NEAR(c.rope.theta, 1e6, 0);
    QD_EXPECT_EQ_INT(c.rope.type, QD_ROPE_DEFAULT);
    QD_EXPECT_EQ_INT(c.dtype, QD_DT_BF16);
    QD_EXPECT_EQ_INT(c.attn_bias, 1);
    QD_EXPECT_EQ_INT(c.o_bias, 1);
    /* linear scaling in the old {"type": ...} spelling */
    const char *lin = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
                      "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
                      "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}";
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(lin, "lin/config.json", &c), QD_OK);
    QD_EXPECT_EQ_INT(c.rope.type, QD_ROPE_LINEAR);
    QD_EXPECT_NEAR(c.rope.factor, 2.0, 0);
    QD_EXPECT_NEAR(c.rope.theta, 10000.0, 0); /* LlamaConfig default */
    QD_EXPECT_EQ_INT(c.nkv, 4);               /* defaults to the head count */
    QD_EXPECT_EQ_INT(c.dtype, QD_DT_F32);
}

/* Replace the first occurrence of `from` in base by `to` and expect the parse to fail. */
static void expect_fail(const char *base, const char *from, const char *to, qd_status want, const char *needle) {
    char buf[4096];
    const char *p = strstr(base, from);
    if (!p) {
        fprintf(stderr, "test bug: '%s' not in base config\n", from);
        QD_EXPECT(0);
        return;
    }
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - base), base, to, p + strlen(from));
    qd_model_cfg c;
    qd_clear_error();
    qd_status st = qd_model_cfg_parse(buf, "m/config.json", &c);
    if (st != want) fprintf(stderr, "  replacing %s -> %s: got %s\n", from, to, qd_status_name(st));
    QD_EXPECT_EQ_INT(st, want);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "m/config.json");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), needle);
}

static void test_refusals(void) {
    /* the supported MoE families need their expert fields */
    expect_fail(mistral, "MistralForCausalLM", "MixtralForCausalLM", QD_ERR_FORMAT, "\"num_local_experts\" is missing");
    expect_fail(qwen2, "Qwen2ForCausalLM", "Qwen2MoeForCausalLM", QD_ERR_FORMAT, "is missing");
    expect_fail(qwen3, "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", QD_ERR_FORMAT, "is missing");
    /* other MoE families by name, with the supported list */
    expect_fail(llama31, "LlamaForCausalLM", "Glm4MoeForCausalLM", QD_ERR_UNSUPPORTED, "Glm4MoeForCausalLM is a mixture");
    expect_fail(llama31, "LlamaForCausalLM", "DeepseekV2ForCausalLM", QD_ERR_UNSUPPORTED, "mixture-of-experts");
    /* MoE by field, even under a supported name */
    expect_fail(llama31, "\"mlp_bias\":false", "\"num_local_experts\":8", QD_ERR_UNSUPPORTED, "num_local_experts");
    /* unknown architecture lists the supported ones */
    expect_fail(llama31, "LlamaForCausalLM", "GPT2LMHeadModel", QD_ERR_UNSUPPORTED,
                "'GPT2LMHeadModel' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
                "MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, "
                "DeepseekV3ForCausalLM)");
    /* unsupported rope types are refused rather than approximated */
    expect_fail(llama31, "\"rope_type\":\"llama3\"", "\"rope_type\":\"longrope\"", QD_ERR_UNSUPPORTED,
                "rope type 'longrope'");
    /* an FP8 source with a format or block it cannot be */
    expect_fail(qwen2, "\"use_sliding_window\":false", "\"quantization_config\":{\"quant_method\":\"fp8\",\"fmt\":\"e5m2\"}",
                QD_ERR_UNSUPPORTED, "quantization_config.fmt");
    expect_fail(qwen2, "\"use_sliding_window\":false",
                "\"quantization_config\":{\"quant_method\":\"fp8\",\"weight_block_size\":[128]}", QD_ERR_FORMAT,
                "weight_block_size");
    expect_fail(qwen2, "\"use_sliding_window\":false",
                "\"quantization_config\":{\"quant_method\":\"fp8\",\"weight_block_size\":[0,128]}", QD_ERR_FORMAT,
                "weight_block_size");
}

static void test_bad_fields(void) {
    expect_fail(llama31, "\"hidden_size\":4096,", "", QD_ERR_FORMAT, "\"hidden_size\" is missing");
    expect_fail(llama31, "\"num_hidden_layers\":32", "\"num_hidden_layers\":\"32\"", QD_ERR_FORMAT,
                "\"num_hidden_layers\" must be a positive integer (got a string)");
    expect_fail(llama31, "\"num_attention_heads\":32", "\"num_attention_heads\":0", QD_ERR_FORMAT, "num_attention_heads");
    expect_fail(llama31, "\"vocab_size\":128256", "\"vocab_size\":1.5", QD_ERR_FORMAT, "vocab_size");
    expect_fail(llama31, "\"num_key_value_heads\":8", "\"num_key_value_heads\":5", QD_ERR_FORMAT, "not a multiple");
    expect_fail(llama31, "\"rms_norm_eps\":1e-05", "\"rms_norm_eps\":-1", QD_ERR_FORMAT, "rms_norm_eps");
    expect_fail(llama31, "\"tie_word_embeddings\":false", "\"tie_word_embeddings\":\"no\"", QD_ERR_FORMAT,
                "tie_word_embeddings");
    expect_fail(llama31, "\"torch_dtype\":\"bfloat16\"", "\"torch_dtype\":\"int4\"", QD_ERR_FORMAT, "torch_dtype");
    expect_fail(llama31, "\"architectures\":[\"LlamaForCausalLM\"],", "\"architectures\":\"LlamaForCausalLM\",",
                QD_ERR_FORMAT, "architectures");
    expect_fail(llama31, "\"low_freq_factor\":1.0,", "", QD_ERR_FORMAT, "low_freq_factor");
    expect_fail(llama31, "\"rope_theta\":500000.0", "\"rope_theta\":\"big\"", QD_ERR_FORMAT, "rope_theta");
    expect_fail(llama31, "{", "[", QD_ERR_FORMAT, "not valid JSON");
    expect_fail(llama31, "\"vocab_size\":128256}", "\"vocab_size\":128256} {}", QD_ERR_FORMAT, "not valid JSON");
    expect_fail(llama31, "\"vocab_size\":128256}", "\"vocab_size\":128256", QD_ERR_FORMAT, "not valid JSON");
    expect_fail(qwen2, "\"use_sliding_window\":false", "\"quantization_config\":[1]", QD_ERR_FORMAT, "quantization_config");
}

static void test_quant_and_fallback(void) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%.*s,\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4}}",
             (int)strlen(qwen3) - 1, qwen3);
    qd_model_cfg c;
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(buf, "q/config.json", &c), QD_OK);
    QD_EXPECT_EQ_INT(c.quantized, 1);
    QD_EXPECT(strcmp(c.quant_method, "gptq") == 0);
    /* no "architectures": the model_type decides; a top-level array is not a config */
    const char *mt = "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                     "\"num_attention_heads\":4,\"vocab_size\":100}";
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(mt, "mt/config.json", &c), QD_OK);
    QD_EXPECT(c.arch == &qd_arch_mistral);
    QD_EXPECT_EQ_INT(qd_model_cfg_parse("[1,2]", "arr/config.json", &c), QD_ERR_FORMAT);
    QD_EXPECT_EQ_INT(qd_model_cfg_parse("{}", "empty/config.json", &c), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "architectures");
}

static void test_fp8_and_yarn(void) {
    char buf[4096];
    qd_model_cfg c;
    snprintf(buf, sizeof buf, "%.*s,\"quantization_config\":{\"quant_method\":\"fp8\",\"fmt\":\"e4m3\","
             "\"activation_scheme\":\"dynamic\",\"weight_block_size\":[128,64]}}", (int)strlen(qwen3) - 1, qwen3);
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(buf, "f/config.json", &c), QD_OK);
    QD_EXPECT_EQ_INT(c.fp8_source, 1);
    QD_EXPECT_EQ_INT(c.quantized, 0); /* a float source for the run */
    QD_EXPECT_EQ_INT(c.fp8_block[0], 128);
    QD_EXPECT_EQ_INT(c.fp8_block[1], 64);
    /* compressed-tensors: FP8 weights are a source, integer weights (a qdist export) stay quantized */
    snprintf(buf, sizeof buf, "%.*s,\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"config_groups\":"
             "{\"g\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":8,\"type\":\"float\",\"strategy\":\"block\","
             "\"block_structure\":[128,128]}}}}}", (int)strlen(qwen3) - 1, qwen3);
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(buf, "ct/config.json", &c), QD_OK);
    QD_EXPECT(c.fp8_source && !c.quantized && c.fp8_block[0] == 128 && c.fp8_block[1] == 128);
    snprintf(buf, sizeof buf, "%.*s,\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"config_groups\":"
             "{\"g\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":4,\"type\":\"int\",\"strategy\":\"group\","
             "\"group_size\":128}}}}}", (int)strlen(qwen3) - 1, qwen3);
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(buf, "ct/config.json", &c), QD_OK);
    QD_EXPECT(!c.fp8_source && c.quantized);
    snprintf(buf, sizeof buf, "%.*s,\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"config_groups\":"
             "{\"a\":{\"weights\":{\"num_bits\":8,\"type\":\"float\"}},\"b\":{\"weights\":{\"num_bits\":4,"
             "\"type\":\"int\"}}}}}", (int)strlen(qwen3) - 1, qwen3);
    /* a mix (a recipe's export of FP8 and integer modules) is a quantized checkpoint, not a source */
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(buf, "ct/config.json", &c), QD_OK);
    QD_EXPECT(!c.fp8_source && c.quantized);
    /* DeepSeek-V3's rope_scaling, in the old {"type": ...} spelling */
    const char *ds = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
                     "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
                     "\"max_position_embeddings\":163840,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":40,"
                     "\"original_max_position_embeddings\":4096,\"beta_fast\":32,\"beta_slow\":1,\"mscale\":1.0,"
                     "\"mscale_all_dim\":1.0}}";
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(ds, "ds/config.json", &c), QD_OK);
    QD_EXPECT_EQ_INT(c.rope.type, QD_ROPE_YARN);
    QD_EXPECT_EQ_INT(c.rope.original_max_pos, 4096);
    QD_EXPECT_NEAR(c.rope.attention_factor, 1.0, 1e-15); /* mscale == mscale_all_dim */
    double m = 0.1 * log(40.0) + 1.0;
    QD_EXPECT_NEAR(qd_rope_softmax_mscale(&c.rope), m * m, 1e-12);
    /* no mscale: attention_factor = 0.1 ln(factor) + 1; betas default to 32 and 1 */
    const char *y = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
                    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
                    "\"max_position_embeddings\":2048,\"rope_parameters\":{\"rope_type\":\"yarn\",\"rope_theta\":1e6,"
                    "\"factor\":4.0}}";
    QD_EXPECT_EQ_INT(qd_model_cfg_parse(y, "y/config.json", &c), QD_OK);
    QD_EXPECT_EQ_INT(c.rope.original_max_pos, 2048);
    QD_EXPECT_NEAR(c.rope.attention_factor, 0.1 * log(4.0) + 1.0, 1e-15);
    QD_EXPECT_NEAR(c.rope.beta_fast, 32, 0);
    QD_EXPECT_NEAR(c.rope.beta_slow, 1, 0);
    QD_EXPECT_NEAR(qd_rope_softmax_mscale(&c.rope), 1.0, 0);
    expect_fail(ds, "\"beta_fast\":32", "\"beta_fast\":-3", QD_ERR_FORMAT, "beta_fast");
    expect_fail(ds, "\"factor\":40", "\"factor\":\"40\"", QD_ERR_FORMAT, "factor");
    expect_fail(ds, "\"original_max_position_embeddings\":4096", "\"original_max_position_embeddings\":0",
                QD_ERR_FORMAT, "original_max_position_embeddings");
}

static void test_load_from_dir(void) {
    char dir[256], path[320];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/qd-test-cfg-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(dir)) return;
    qd_model_cfg c;
    qd_clear_error();
    QD_EXPECT_EQ_INT(qd_model_cfg_load(dir, &c), QD_ERR_IO);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "config.json is missing");
    snprintf(path, sizeof path, "%s/config.json", dir);
    qd_write_file_atomic(path, "this is not json", 16);
    QD_EXPECT_EQ_INT(qd_model_cfg_load(dir, &c), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), path);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "not valid JSON");
    qd_write_file_atomic(path, qwen2, strlen(qwen2));
    QD_EXPECT_EQ_INT(qd_model_cfg_load(dir, &c), QD_OK);
    QD_EXPECT(c.arch == &qd_arch_qwen2);
    char fx[512];
    if (qd_fixture(fx, sizeof fx, "stories260K-hf/config.json")) {
        *strrchr(fx, '/') = '\0'; /* the model directory */
        QD_EXPECT_EQ_INT(qd_model_cfg_load(fx, &c), QD_OK);
        QD_EXPECT_EQ_INT(c.nlayers, 5);
        QD_EXPECT_EQ_INT(c.head_dim, 8);
        QD_EXPECT_EQ_INT(c.tie_embed, 1);
    }
    qd_rm_rf(dir);
}

static void test_classify(void) {
    qd_model_cfg c;
    qd_model_cfg_parse(qwen3, "qwen3/config.json", &c); /* 28 layers */
    char mod[64];
    int b;
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "model.embed_tokens.weight", &b, mod, sizeof mod), QD_PART_EMBED);
    QD_EXPECT_EQ_INT(b, -1);
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "model.layers.27.self_attn.q_proj.weight", &b, mod, sizeof mod), QD_PART_BLOCK);
    QD_EXPECT_EQ_INT(b, 27);
    QD_EXPECT(strcmp(mod, "self_attn.q_proj.weight") == 0);
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "model.layers.3.mlp.down_proj.qweight", &b, mod, sizeof mod), QD_PART_BLOCK);
    QD_EXPECT(b == 3 && strcmp(mod, "mlp.down_proj.qweight") == 0);
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "model.layers.0.input_layernorm.weight", &b, mod, sizeof mod), QD_PART_BLOCK);
    QD_EXPECT(strcmp(mod, "input_layernorm.weight") == 0);
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "model.layers.28.mlp.up_proj.weight", &b, mod, sizeof mod), QD_PART_OTHER);
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "model.layers.x.mlp.up_proj.weight", &b, mod, sizeof mod), QD_PART_OTHER);
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "model.layers.01.mlp.up_proj.weight", &b, mod, sizeof mod), QD_PART_OTHER);
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "model.layers.5", &b, mod, sizeof mod), QD_PART_OTHER);
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "model.norm.weight", &b, mod, sizeof mod), QD_PART_FINAL_NORM);
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "lm_head.weight", &b, mod, sizeof mod), QD_PART_LM_HEAD);
    QD_EXPECT_EQ_INT(qd_model_classify(&c, "rotary.inv_freq", &b, NULL, 0), QD_PART_OTHER);
    qd_linear t[QD_NLIN];
    QD_EXPECT_EQ_INT(qd_model_linears(&c, 0, t, QD_NLIN), 7);
    QD_EXPECT(strcmp(t[0].module, "self_attn.q_proj") == 0 && t[0].stage == 0 && t[0].hkey == 0);
    QD_EXPECT(strcmp(t[2].module, "self_attn.v_proj") == 0 && t[2].stage == 0);
    QD_EXPECT(strcmp(t[3].module, "self_attn.o_proj") == 0 && t[3].stage == 1);
    QD_EXPECT(strcmp(t[5].module, "mlp.up_proj") == 0 && t[5].stage == 2 && t[5].kind == QD_LIN_UP);
    QD_EXPECT(strcmp(t[6].module, "mlp.down_proj") == 0 && t[6].stage == 3 && t[6].quantize && t[6].expert == -1);
}

int main(void) {
    QD_RUN(test_llama);
    QD_RUN(test_mistral);
    QD_RUN(test_qwen2);
    QD_RUN(test_qwen3);
    QD_RUN(test_rope_parameters);
    QD_RUN(test_refusals);
    QD_RUN(test_bad_fields);
    QD_RUN(test_quant_and_fallback);
    QD_RUN(test_fp8_and_yarn);
    QD_RUN(test_load_from_dir);
    QD_RUN(test_classify);
    return QD_TEST_END();
}
