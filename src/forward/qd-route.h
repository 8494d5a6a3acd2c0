/* SPDX-License-Identifier: MIT
 * qd-route.h - mixture-of-experts routing on the host, over fp32 arrays (the caller computes the
 * router logits x @ gate^T in fp32 and hands them over).
 *
 * DeepSeek-V3 (transformers' DeepseekV3TopkRouter, topk_method "noaux_tc"): scores = sigmoid(logits);
 * the choice uses scores + e_score_correction_bias: each of n_group groups scores the sum of its top 2
 * biased scores, the topk_group best groups stay, and the top_k best experts among them are chosen;
 * their weights are the unbiased scores, divided by (their sum + 1e-20) when norm_topk_prob, times
 * routed_scaling_factor. Ties go to the lower index. idx[t][j] / w[t][j] list token t's experts by
 * decreasing biased score.
 */
#ifndef QD_ROUTE_H
#define QD_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "qd-status.h"

typedef struct qd_route_dsv3 {
    int n_experts, top_k, n_group, topk_group;
    int norm_topk_prob;
    float routed_scaling_factor;
} qd_route_dsv3;

/* logits [T, n_experts], bias [n_experts] (NULL: zeros) -> idx [T, top_k], w [T, top_k]. Refuses a
 * configuration qd-dsv3.h would refuse and non-finite logits or bias (naming the token / expert). */
qd_status qd_route_dsv3_topk(const qd_route_dsv3 *c, const float *logits, const float *bias, size_t T, int32_t *idx,
                             float *w);

#endif
