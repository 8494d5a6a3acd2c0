/* SPDX-License-Identifier: MIT
 * qd-model.h - the model description read from a Hugging Face config.json.
 *
 * Supported: the architectures listed in arch.c (Llama, Mistral, Qwen2, Qwen3, and the
 * mixture-of-experts Mixtral, Qwen2-MoE, Qwen3-MoE, DeepSeek-V3; qd-arch.h). Other architectures are refused
 * with a message listing these; other MoE configs (DeepSeek-V2, ...) are recognised and refused by name. Rope
 * parameters are read from either the hub form (rope_theta + rope_scaling) or the newer rope_parameters
 * form (default, linear, llama3, yarn). An FP8 source (quantization_config.quant_method "fp8") is a
 * float source whose Linears are dequantized on load (fp8_source; docs/formats.md "FP8 sources").
 * Missing required fields and
 * values of the wrong type name the field and the file. qdist never runs remote code: auto_map is ignored.
 * Size fields are bounded before anything is sized from them (layers <= 4096, heads and head_dim <= 4096,
 * hidden <= 2^18, intermediate and heads*head_dim <= 2^20, vocab <= 2^24, positions <= 2^28), so
 * every product of two dims fits in 64 bits and every Linear's N and K in an int.
 *
 * Tensor names map to parts: the embedding, a block (model.layers.<i>.<module>), the final norm,
 * lm_head. qd_model_linears lists a block's Linear modules (its Linear table). What differs
 * between architectures (flags, block tensors, Linear shapes) lives in one arch-<name>.c each
 * (qd-arch.h); the opened checkpoint is qd-model-handle.h's qd_model.
 */
#ifndef QD_MODEL_H
#define QD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "qd-dtype.h"
#include "qd-status.h"

struct qd_arch; /* qd-arch.h */

/* The kinds of Linear in a decoder block. A dense block's Linear table is exactly the first QD_NLIN,
 * in this order (its table index is its kind); a mixture-of-experts block has q/k/v/o, the router, an
 * optional shared expert with its sigmoid gate, and gate/up/down per routed expert. */
typedef enum {
    QD_LIN_Q, QD_LIN_K, QD_LIN_V, QD_LIN_O, QD_LIN_GATE, QD_LIN_UP, QD_LIN_DOWN, QD_NLIN,
    QD_LIN_ROUTER = QD_NLIN, QD_LIN_EXP_GATE, QD_LIN_EXP_UP, QD_LIN_EXP_DOWN,
    QD_LIN_SH_GATE, QD_LIN_SH_UP, QD_LIN_SH_DOWN, QD_LIN_SH_ROUTER,
    /* MLA (DeepSeek-V3): q_a_proj, q_b_proj, kv_a_proj_with_mqa, kv_b_proj (q_proj is QD_LIN_Q, o_proj QD_LIN_O) */
    QD_LIN_Q_A, QD_LIN_Q_B, QD_LIN_KV_A, QD_LIN_KV_B, QD_NLIN_KINDS
} qd_lin;
const char *qd_lin_name(qd_lin l);  /* a dense block's "self_attn.q_proj", ..., "mlp.down_proj" */

/* One Linear of a block's table (qd_model_linears). Linears with the same hkey share their input, so
 * one Hessian (GPTQ) serves them all; stage is the true-sequential step that collects it:
 * [q,k,v]=0 [o]=1 [the MLP's inputs: gate/up of every expert, shared expert, router]=2 [down]=3; MLA
 * (DeepSeek-V3): [q_a or q_proj, kv_a]=0 [q_b, kv_b]=1 [o]=2 [MLP inputs]=3 [down]=4. */
typedef struct qd_linear {
    char module[64];  /* inside model.layers.<i>.: "self_attn.q_proj", "mlp.experts.3.gate_proj" */
    qd_lin kind;
    int expert;       /* routed expert index, -1 for every other Linear */
    int stage;
    int hkey;         /* dense: = stage; MoE: 0 qkv, 1 o, 2 the MoE input, 3 shared down, 4+2e / 5+2e expert e */
    int quantize;     /* 0: kept in full precision (the router and the shared expert's gate) */
    int64_t N, K;     /* [out, in] */
} qd_linear;

/* The RMSNorms of a block: before attention, before the MLP, and Qwen3's per-head q/k norms; MLA's
 * q_a_layernorm and kv_a_layernorm; and, loaded the same way (a vector of one block), DeepSeek-V3's
 * router bias mlp.gate.e_score_correction_bias [experts]. */
typedef enum {
    QD_NORM_IN, QD_NORM_POST, QD_NORM_Q, QD_NORM_K, QD_NORM_Q_A, QD_NORM_KV_A, QD_NORM_EBIAS, QD_NNORM
} qd_norm;

/* DeepSeek-V3's MLA and routing fields (qd-dsv3.h reads them) */
typedef struct qd_dsv3_cfg {
    int q_lora_rank;      /* 0: no q compression (q_proj [nheads*qk_head_dim, hidden]) */
    int kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, qk_head_dim, v_head_dim;
    int rope_interleave;  /* rotary input dims stored interleaved (re, im pairs): de-interleaved before rope */
    int n_routed_experts, n_shared_experts, num_experts_per_tok;
    int n_group, topk_group;
    int norm_topk_prob;
    double routed_scaling_factor;
    int first_k_dense_replace; /* blocks [0, k) have a dense MLP */
    int moe_intermediate_size;
} qd_dsv3_cfg;

typedef enum { QD_ROPE_DEFAULT, QD_ROPE_LLAMA3, QD_ROPE_LINEAR, QD_ROPE_YARN } qd_rope_type;

typedef struct qd_rope {
    double theta;
    qd_rope_type type;
    double factor;          /* llama3 / linear / yarn */
    double low_freq_factor; /* llama3 */
    double high_freq_factor;
    int original_max_pos;   /* llama3 / yarn */
    /* yarn (transformers' _compute_yarn_parameters): the ramp between beta_fast and beta_slow rotations,
     * attention_factor (given, or from factor, mscale and mscale_all_dim) multiplies cos and sin;
     * mscale_all_dim also scales an MLA model's softmax (qd_rope_softmax_mscale) */
    double beta_fast, beta_slow, mscale, mscale_all_dim, attention_factor;
    int truncate;
} qd_rope;

typedef struct qd_model_cfg {
    const struct qd_arch *arch; /* one of arch.c's list */
    char arch_name[64];   /* the "architectures"[0] string */
    char model_type[32];
    int hidden;
    int intermediate;
    int nlayers;
    int nheads;
    int nkv;
    int head_dim;         /* config.head_dim or hidden/nheads */
    int vocab;
    int max_pos;
    double rms_eps;
    qd_rope rope;
    int tie_embed;
    int attn_bias;        /* q/k/v bias (Qwen2 always, Llama/Mistral when attention_bias) */
    int o_bias;           /* o_proj bias (Llama attention_bias) */
    int mlp_bias;
    int qk_norm;          /* Qwen3 */
    int sliding_window;   /* 0 when none/unused */
    qd_dtype dtype;       /* torch_dtype / dtype; F32 when absent */
    int bos_id, eos_id;   /* -1 when absent */
    int quantized;        /* has a quantization_config (an FP8 source does not count: see fp8_source) */
    char quant_method[32];
    /* mixture of experts (0 experts: dense). A block is sparse unless listed in mlp_only_layers or
     * (i + 1) % sparse_step != 0; a dense block of an MoE model has the dense MLP (intermediate). */
    int moe_experts, moe_topk, moe_inter, moe_shared_inter; /* shared_inter 0: no shared expert */
    int moe_norm_topk;    /* renormalise the top-k probabilities (Mixtral always) */
    int moe_sparse_step;  /* decoder_sparse_step, 1 when absent */
    int moe_mixtral;      /* tensor names: block_sparse_moe.experts.E.w1/w3/w2, else mlp.experts.E.gate/up/down_proj */
    unsigned char moe_mlp_only[512]; /* bit i: block i is dense (mlp_only_layers) */
    int fp8_source;       /* quant_method "fp8": e4m3 Linears dequantized on load, a float source to quantize */
    int fp8_block[2];     /* its weight_block_size [rows, cols]; {0, 0}: one scale per tensor or per row */
    /* DeepSeek-V3: MLA attention (its Linear table: 3 attention stages, keys 0..3), sigmoid group-limited
     * routing with e_score_correction_bias, shared experts as one MLP mlp.shared_experts.* */
    int mla;
    qd_dsv3_cfg dsv3;
    int mtp_layers;       /* num_nextn_predict_layers: blocks nlayers.. passed through unquantized */
} qd_model_cfg;

qd_status qd_model_cfg_load(const char *model_dir, qd_model_cfg *out);
/* The factor an MLA (DeepSeek) attention multiplies its softmax scale by: yarn_get_mscale(factor,
 * mscale_all_dim)^2 for a scaled rope with mscale_all_dim, else 1 (transformers' yarn_apply_mscale). */
double qd_rope_softmax_mscale(const qd_rope *r);
/* Same from an in-memory config.json text; path is only used in messages. */
qd_status qd_model_cfg_parse(const char *json, const char *path, qd_model_cfg *out);

typedef enum { QD_PART_EMBED, QD_PART_BLOCK, QD_PART_FINAL_NORM, QD_PART_LM_HEAD, QD_PART_OTHER } qd_part;

/* block is set for QD_PART_BLOCK (else -1); module receives the name inside the block
 * ("self_attn.q_proj", "input_layernorm", ...) and the suffix (".weight", ".qweight", ...) is kept. */
qd_part qd_model_classify(const qd_model_cfg *cfg, const char *tensor_name, int *block,
                          char *module, size_t module_cap);

/* Block b's Linear table into out (cap entries; out NULL: only counted); returns the count. A dense
 * block gives the QD_NLIN Linears of qd_lin in order; an MoE block: q, k, v, o, router, [shared gate,
 * up, down, shared_expert_gate], then gate, up, down of each expert. */
int qd_model_linears(const qd_model_cfg *cfg, int block, qd_linear *out, int cap);
/* The most Linears and Hessian keys (hkey + 1) of any block of cfg. */
int qd_model_max_linears(const qd_model_cfg *cfg);
int qd_model_max_hkeys(const qd_model_cfg *cfg);
/* The true-sequential stages of a block (4; MLA: 5) and where the MLP's start: its first stage (2; MLA:
 * 3) and its first Hessian key (2; MLA: 4; MoE experts' keys follow: key + 2 + 2e, key + 3 + 2e). */
int qd_model_nstages(const qd_model_cfg *cfg);
int qd_model_mlp_stage(const qd_model_cfg *cfg);
int qd_model_mlp_key(const qd_model_cfg *cfg);
/* 1 when block b is a mixture-of-experts block */
int qd_model_block_is_moe(const qd_model_cfg *cfg, int block);
/* A Linear of kind lin is [N, K] (out_features, in_features), as cfg's architecture builds it. */
void qd_model_linear_shape(const qd_model_cfg *cfg, qd_lin lin, int64_t *N, int64_t *K);
int64_t qd_model_norm_size(const qd_model_cfg *cfg, qd_norm norm);

/* Copy config.json, generation_config.json and the tokenizer files that exist in src_dir to dst_dir
 * (what a converted checkpoint carries over besides its weights), by the rules of qd-meta-files.h:
 * regular files inside src_dir only, each under QD_META_FILE_MAX_BYTES, mode at most 0644.
 * qd_model_check_meta_files applies the same checks without copying (a refusal before any work). */
qd_status qd_model_copy_meta_files(const char *src_dir, const char *dst_dir);
qd_status qd_model_check_meta_files(const char *src_dir);

#endif
