/* SPDX-License-Identifier: MIT
 * qd-dsv3.h - the DeepSeek-V3 fields of config.json (DeepseekV3Config in transformers): MLA attention
 * sizes and the mixture-of-experts routing, each read and bounded, a bad field named in one line.
 *
 * Defaults are transformers' (q_lora_rank 1536, kv_lora_rank 512, qk_nope 128, qk_rope 64, v 128,
 * 256 routed experts, 1 shared, top-8 of 4 of 8 groups, scaling 2.5, norm_topk_prob true, first 3 blocks
 * dense, moe_intermediate_size 2048, rope_interleave true); q_lora_rank null means q_proj instead of
 * the q_a/q_b pair. Checked: every size positive and bounded like qd-model.h's, n_routed_experts a
 * multiple of n_group with at least 2 experts per group (the group score is the sum of its top 2),
 * topk_group <= n_group, num_experts_per_tok <= the experts of topk_group groups, scoring_func
 * "sigmoid" and topk_method "noaux_tc" when given, first_k_dense_replace <= num_hidden_layers.
 * The rope of the MLA heads is the model's qd_rope over qk_rope_head_dim dims (transformers sets
 * head_dim = qk_rope_head_dim); its softmax scale is qk_head_dim^-0.5 * qd_rope_softmax_mscale.
 */
#ifndef QD_DSV3_H
#define QD_DSV3_H

#include "qd-model.h"

struct cJSON;

/* qd_dsv3_cfg is declared in qd-model.h (a qd_model_cfg holds one). */

/* root: the parsed config.json object; base: its qd_model_cfg (num_hidden_layers, hidden_size). */
qd_status qd_dsv3_cfg_read(const struct cJSON *root, const char *path, const qd_model_cfg *base, qd_dsv3_cfg *out);
/* The same from config.json text (tests and tools); nlayers bounds first_k_dense_replace. */
qd_status qd_dsv3_cfg_parse(const char *json, const char *path, int nlayers, qd_dsv3_cfg *out);

#endif
