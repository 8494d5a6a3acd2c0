/* SPDX-License-Identifier: MIT
 * arch.c - the list of supported architectures (the only one) and what every caller asks of the
 * architecture of a config: a Linear's shape, a norm's size, the Linears in true-sequential order.
 */
#include "qd-arch.h"

#include <stdio.h>
#include <string.h>

static const struct qd_arch *const arches[] = {&qd_arch_llama,     &qd_arch_mistral,   &qd_arch_qwen2,    &qd_arch_qwen3,
                                               &qd_arch_mixtral,   &qd_arch_qwen2_moe, &qd_arch_qwen3_moe,
                                               &qd_arch_deepseek_v3};
#define NARCH (sizeof arches / sizeof arches[0])

const struct qd_arch *qd_arch_find(const char *name) {
    for (size_t i = 0; name && i < NARCH; i++)
        if (strcmp(name, arches[i]->name) == 0) return arches[i];
    return NULL;
}

const struct qd_arch *qd_arch_by_model_type(const char *model_type) {
    for (size_t i = 0; model_type && i < NARCH; i++)
        if (strcmp(model_type, arches[i]->model_type) == 0) return arches[i];
    return NULL;
}

void qd_arch_supported_list(char *buf, size_t cap) {
    size_t n = 0;
    if (!cap) return;
    buf[0] = '\0';
    for (size_t i = 0; i < NARCH && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", arches[i]->name);
}

void qd_model_linear_shape(const qd_model_cfg *cfg, qd_lin lin, int64_t *N, int64_t *K) {
    cfg->arch->linear_shape(cfg, lin, N, K, NULL, 0);
}

int64_t qd_model_norm_size(const qd_model_cfg *cfg, qd_norm norm) {
    switch (norm) {
    case QD_NORM_Q:
    case QD_NORM_K: return cfg->head_dim;
    case QD_NORM_Q_A: return cfg->dsv3.q_lora_rank;
    case QD_NORM_KV_A: return cfg->dsv3.kv_lora_rank;
    case QD_NORM_EBIAS: return cfg->moe_experts;
    default: return cfg->hidden;
    }
}
