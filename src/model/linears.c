/* SPDX-License-Identifier: MIT
 * linears.c - a block's Linear table (qd-model.h qd_model_linears) and its tensor list
 * (qd-arch.h qd_model_block_tensors), the one place that knows how a mixture-of-experts block is laid out.
 */
#include "qd-arch.h"

#include <stdio.h>
#include <string.h>

static const char *const dense_names[QD_NLIN] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                 "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                 "mlp.down_proj"};
static const int dense_stage[QD_NLIN] = {0, 0, 0, 1, 2, 2, 3};

const char *qd_lin_name(qd_lin l) { return l < QD_NLIN ? dense_names[l] : "?"; }

int qd_model_block_is_moe(const qd_model_cfg *c, int b) {
    if (c->moe_experts <= 0 || b < 0 || b >= c->nlayers) return 0;
    if (c->moe_mlp_only[b / 8] & (1u << (b % 8))) return 0;
    return (b + 1) % (c->moe_sparse_step > 0 ? c->moe_sparse_step : 1) == 0;
}

typedef struct {
    const qd_model_cfg *cfg;
    qd_linear *out;
    int cap, n;
    int want; /* >= 0: only entry want, into out[0] */
} table;

static void add(table *t, qd_lin kind, int expert, int stage, int hkey, int quantize, const char *fmt, int e) {
    int write = t->want >= 0 ? t->n == t->want : t->n < t->cap;
    if (t->out && write) {
        qd_linear *l = &t->out[t->want >= 0 ? 0 : t->n];
        memset(l, 0, sizeof *l);
        snprintf(l->module, sizeof l->module, fmt, e);
        l->kind = kind, l->expert = expert, l->stage = stage, l->hkey = hkey, l->quantize = quantize;
        qd_model_linear_shape(t->cfg, kind, &l->N, &l->K);
    }
    t->n++;
}

int qd_model_nstages(const qd_model_cfg *c) { return c->mla ? 5 : 4; }
int qd_model_mlp_stage(const qd_model_cfg *c) { return c->mla ? 3 : 2; }
int qd_model_mlp_key(const qd_model_cfg *c) { return c->mla ? 4 : 2; }

/* MLA: {q_a or q_proj, kv_a} read the normed x (stage 0, key 0), {q_b, kv_b} their normed latents
 * (stage 1, keys 1 and 2: different inputs), {o_proj} (stage 2, key 3) */
static void mla_attention(table *t) {
    if (t->cfg->dsv3.q_lora_rank) add(t, QD_LIN_Q_A, -1, 0, 0, 1, "self_attn.q_a_proj", 0);
    else add(t, QD_LIN_Q, -1, 0, 0, 1, "self_attn.q_proj", 0);
    add(t, QD_LIN_KV_A, -1, 0, 0, 1, "self_attn.kv_a_proj_with_mqa", 0);
    if (t->cfg->dsv3.q_lora_rank) add(t, QD_LIN_Q_B, -1, 1, 1, 1, "self_attn.q_b_proj", 0);
    add(t, QD_LIN_KV_B, -1, 1, 2, 1, "self_attn.kv_b_proj", 0);
    add(t, QD_LIN_O, -1, 2, 3, 1, "self_attn.o_proj", 0);
}

static int build(table t, int b) {
    const qd_model_cfg *c = t.cfg;
    int S = qd_model_mlp_stage(c), KB = qd_model_mlp_key(c);
    if (c->mla) mla_attention(&t);
    else
        for (int l = 0; l < QD_LIN_GATE; l++)
            add(&t, (qd_lin)l, -1, dense_stage[l], dense_stage[l], 1, dense_names[l], 0);
    if (!qd_model_block_is_moe(c, b)) {
        for (int l = QD_LIN_GATE; l < QD_NLIN; l++) {
            int st = S + dense_stage[l] - 2;
            add(&t, (qd_lin)l, -1, st, KB + dense_stage[l] - 2, 1, dense_names[l], 0);
        }
        return t.n;
    }
    const char *pre = c->moe_mixtral ? "block_sparse_moe" : "mlp";
    char fmt[3][64], router[64];
    snprintf(router, sizeof router, "%s.gate", pre);
    add(&t, QD_LIN_ROUTER, -1, S, KB, 0, router, 0);
    if (c->moe_shared_inter > 0 && c->mla) { /* DeepSeek: n_shared_experts as one MLP, no gate */
        add(&t, QD_LIN_SH_GATE, -1, S, KB, 1, "mlp.shared_experts.gate_proj", 0);
        add(&t, QD_LIN_SH_UP, -1, S, KB, 1, "mlp.shared_experts.up_proj", 0);
        add(&t, QD_LIN_SH_DOWN, -1, S + 1, KB + 1, 1, "mlp.shared_experts.down_proj", 0);
    } else if (c->moe_shared_inter > 0) {
        add(&t, QD_LIN_SH_GATE, -1, S, KB, 1, "mlp.shared_expert.gate_proj", 0);
        add(&t, QD_LIN_SH_UP, -1, S, KB, 1, "mlp.shared_expert.up_proj", 0);
        add(&t, QD_LIN_SH_DOWN, -1, S + 1, KB + 1, 1, "mlp.shared_expert.down_proj", 0);
        add(&t, QD_LIN_SH_ROUTER, -1, S, KB, 0, "mlp.shared_expert_gate", 0);
    }
    static const char *const mixtral[3] = {"w1", "w3", "w2"}, *const qwen[3] = {"gate_proj", "up_proj", "down_proj"};
    for (int i = 0; i < 3; i++)
        snprintf(fmt[i], sizeof fmt[i], "%s.experts.%%d.%s", pre, c->moe_mixtral ? mixtral[i] : qwen[i]);
    for (int e = 0; e < c->moe_experts; e++) {
        add(&t, QD_LIN_EXP_GATE, e, S, KB + 2 + 2 * e, 1, fmt[0], e);
        add(&t, QD_LIN_EXP_UP, e, S, KB + 2 + 2 * e, 1, fmt[1], e);
        add(&t, QD_LIN_EXP_DOWN, e, S + 1, KB + 3 + 2 * e, 1, fmt[2], e);
    }
    return t.n;
}

int qd_model_linears(const qd_model_cfg *c, int b, qd_linear *out, int cap) {
    return build((table){c, out, cap, 0, -1}, b);
}

/* entry l of block b's table */
static void linear_at(const qd_model_cfg *c, int b, int l, qd_linear *out) { build((table){c, out, 1, 0, l}, b); }

int qd_model_max_linears(const qd_model_cfg *c) {
    int m = 0;
    for (int b = 0; b < c->nlayers; b++) {
        int n = qd_model_linears(c, b, NULL, 0);
        if (n > m) m = n;
    }
    return m ? m : QD_NLIN;
}

int qd_model_max_hkeys(const qd_model_cfg *c) {
    for (int b = 0; b < c->nlayers; b++)
        if (qd_model_block_is_moe(c, b)) return qd_model_mlp_key(c) + 2 + 2 * c->moe_experts;
    return qd_model_mlp_key(c) + 2;
}

size_t qd_model_block_tensors(const qd_model_cfg *c, int b, qd_block_tensor_ref *out, size_t cap) {
    const struct qd_arch *a = c->arch;
    size_t n = 0;
    for (size_t i = 0; i < a->ntensors; i++) {
        const struct qd_block_tensor *bt = &a->tensors[i];
        if (bt->present && !bt->present(c)) continue;
        if (out && n < cap) {
            snprintf(out[n].suffix, sizeof out[n].suffix, "%s", bt->suffix);
            out[n].role = bt->role, out[n].slot = bt->slot;
        }
        n++;
    }
    if (!a->moe) return n;
    int nl = qd_model_linears(c, b, NULL, 0);
    /* the MLP's Linears (MLA: every Linear of the block): weights only (no MoE MLP has biases; an MLA
     * block with attention_bias is refused) */
    for (int l = c->mla ? 0 : QD_LIN_GATE; l < nl; l++) {
        if (out && n < cap) {
            qd_linear lin[1];
            linear_at(c, b, l, lin);
            snprintf(out[n].suffix, sizeof out[n].suffix, "%s.weight", lin->module);
            out[n].role = QD_T_LINEAR_W, out[n].slot = l;
        }
        n++;
    }
    if (c->mla && qd_model_block_is_moe(c, b)) { /* the router's bias, kept in full precision */
        if (out && n < cap) {
            snprintf(out[n].suffix, sizeof out[n].suffix, "mlp.gate.e_score_correction_bias");
            out[n].role = QD_T_NORM, out[n].slot = QD_NORM_EBIAS;
        }
        n++;
    }
    return n;
}

size_t qd_model_max_block_tensors(const qd_model_cfg *c) {
    size_t m = 0;
    for (int b = 0; b < c->nlayers; b++) {
        size_t n = qd_model_block_tensors(c, b, NULL, 0);
        if (n > m) m = n;
    }
    return m;
}
