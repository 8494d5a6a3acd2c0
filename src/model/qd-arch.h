/* SPDX-License-Identifier: MIT
 * qd-arch.h - what one architecture knows: the class names that select it, the config.json flags
 * only it reads, the tensors of one of its blocks and the shape of each Linear.
 *
 * One file per architecture (arch-<name>.c) defines its struct qd_arch; src/model/arch.c holds the
 * only list of them. Everything else asks the architecture of a config (cfg->arch) instead of
 * knowing names or shapes: the checkpoint check (model-check.c), the loader (model-load.c), the
 * memory and disk estimates and the quantizers' buffers (qd_model_linear_shape).
 * Adding an architecture = one arch-<name>.c + its line in arch.c + tests/model.
 */
#ifndef QD_ARCH_H
#define QD_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "qd-model.h"

struct cJSON;

typedef enum {
    QD_T_LINEAR_W, /* a Linear's weight [N, K]; slot is its index in the block's Linear table */
    QD_T_LINEAR_B, /* a Linear's bias [N]; slot is its index in the block's Linear table */
    QD_T_NORM,     /* an RMSNorm weight; slot is its qd_norm, size qd_model_norm_size */
} qd_tensor_role;

/* One tensor of a block: the name inside model.layers.<i>. and what it is. */
struct qd_block_tensor {
    const char *suffix;                      /* "self_attn.q_proj.weight" */
    qd_tensor_role role;
    int slot;                                /* Linear table index (= qd_lin for q/k/v/o and a dense MLP) or qd_norm */
    int (*present)(const qd_model_cfg *cfg); /* NULL: in every block of this architecture */
};

/* A tensor of one particular block (qd_model_block_tensors): the static table's entries present for
 * cfg, plus, for a mixture-of-experts architecture, the weight of every MLP Linear of the block's table. */
typedef struct qd_block_tensor_ref {
    char suffix[96];
    qd_tensor_role role;
    int slot;
} qd_block_tensor_ref;
/* Block b's tensors into out (cap entries; out NULL: counted only); returns the count. */
size_t qd_model_block_tensors(const qd_model_cfg *cfg, int block, qd_block_tensor_ref *out, size_t cap);
size_t qd_model_max_block_tensors(const qd_model_cfg *cfg);

struct qd_arch {
    const char *name;       /* "LlamaForCausalLM": config.json "architectures"[0] */
    const char *model_type; /* "llama": used when "architectures" is absent */
    /* the flags of this family (biases, qk norm, sliding window), after the common fields are read;
     * errors name path and the field (model-config.c's helpers, qd-model-json.h) */
    qd_status (*read_flags)(const struct cJSON *root, const char *path, qd_model_cfg *cfg);
    const struct qd_block_tensor *tensors; /* in the order the checks report them */
    size_t ntensors;
    int moe; /* mixture of experts: tensors holds attention and norms; the MLP comes from the Linear table */
    /* Linear lin is [N, K] (out, in); fields, when not NULL, receives the config fields the two
     * dims come from with their values ("intermediate_size=128, hidden_size=64") */
    void (*linear_shape)(const qd_model_cfg *cfg, qd_lin lin, int64_t *N, int64_t *K, char *fields,
                         size_t cap);
};

/* The architectures qdist supports (arch.c); NULL when name is not one of them. */
const struct qd_arch *qd_arch_find(const char *name);
const struct qd_arch *qd_arch_by_model_type(const char *model_type);
/* "LlamaForCausalLM, MistralForCausalLM, ..." into buf (for the refusal messages) */
void qd_arch_supported_list(char *buf, size_t cap);

/* The Llama shapes (q [heads*head_dim, hidden], k/v [kv_heads*head_dim, hidden], o [hidden,
 * heads*head_dim], gate/up [intermediate, hidden], down [hidden, intermediate]), shared by the
 * families whose blocks are Llama's. */
void qd_arch_llama_linear_shape(const qd_model_cfg *cfg, qd_lin lin, int64_t *N, int64_t *K, char *fields,
                                size_t cap);

extern const struct qd_arch qd_arch_llama, qd_arch_mistral, qd_arch_qwen2, qd_arch_qwen3;
extern const struct qd_arch qd_arch_mixtral, qd_arch_qwen2_moe, qd_arch_qwen3_moe, qd_arch_deepseek_v3;

#endif
