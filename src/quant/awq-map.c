/* SPDX-License-Identifier: MIT
 * awq-map.c - a block's AWQ mappings from its Linear table (awq-internal.h qd__awq_maps), in the
 * order AutoAWQ applies them:
 *   input_layernorm -> the Linears of key 0 (q/k/v; MLA: q_a_proj or q_proj, kv_a_proj_with_mqa),
 *     loss on the attention module;
 *   v_proj -> o_proj (dense attention, when v's width equals o's input: not under GQA), loss on o;
 *   MLA: q_a_layernorm -> q_b_proj and kv_a_layernorm -> kv_b_proj, loss on that Linear;
 *   post_attention_layernorm -> every Linear of the MLP's first stage (gate/up; MoE: every expert's
 *     and the shared expert's gate/up, with the router and shared_expert_gate, which read the same
 *     input, folded but not quantized, so the routing is unchanged), loss on the whole MLP;
 *   each up -> its down (dense, shared expert, every expert), loss on that down.
 */
#include <stdlib.h>

#include "qd-check.h"
#include "awq-internal.h"

typedef struct {
    qd__awq_map *m;
    int n, cap;
    const qd_block_w *w;
    const qd_qspec *specs;
} maps;

/* a mapping of the Linears l with want(l), kept when one of them is quantized */
static qd_status add(maps *ms, int key, qd_buf_t norm, int prev, qd__awq_loss loss, int loss_lin,
                     int (*want)(const qd_linear *, int), int arg) {
    const qd_block_w *w = ms->w;
    int n = 0, quantized = 0;
    for (int l = 0; l < w->nlin; l++)
        if (want(&w->lin[l], arg)) n++, quantized |= !ms->specs[l].skip;
    if (!quantized) return QD_OK;
    if (ms->n == ms->cap) {
        int nc = ms->cap ? 2 * ms->cap : 8;
        qd__awq_map *t = realloc(ms->m, (size_t)nc * sizeof *t);
        if (!t) return qd_fail(QD_ERR_NOMEM, "awq: out of memory for the mappings of block %d", w->index);
        ms->m = t, ms->cap = nc;
    }
    qd__awq_map *m = &ms->m[ms->n];
    *m = (qd__awq_map){.key = key, .norm = norm, .prev = prev, .loss = loss, .loss_lin = loss_lin};
    m->lin = malloc((size_t)n * sizeof *m->lin);
    if (!m->lin) return qd_fail(QD_ERR_NOMEM, "awq: out of memory for the mappings of block %d", w->index);
    for (int l = 0; l < w->nlin; l++)
        if (want(&w->lin[l], arg)) m->lin[m->nlin++] = l;
    ms->n++;
    return QD_OK;
}

static int key_is(const qd_linear *l, int key) { return l->hkey == key; }
static int stage_is(const qd_linear *l, int stage) { return l->stage == stage; }

static int is_down(qd_lin k) { return k == QD_LIN_DOWN || k == QD_LIN_SH_DOWN || k == QD_LIN_EXP_DOWN; }
static int is_up(qd_lin k) { return k == QD_LIN_UP || k == QD_LIN_SH_UP || k == QD_LIN_EXP_UP; }

static qd_status build(const qd_qctx *c, maps *ms) {
    const qd_block_w *w = ms->w;
    int KB = qd_model_mlp_key(c->cfg), S = qd_model_mlp_stage(c->cfg);
    QD_CHECK(add(ms, 0, w->ln_in, -1, QD__AWQ_ATTN, -1, key_is, 0));
    for (int l = 0; l < w->nlin; l++) {
        const qd_linear *lin = &w->lin[l];
        if (lin->kind == QD_LIN_O && !c->cfg->mla && l > 0 && w->lin[l - 1].kind == QD_LIN_V &&
            w->n_out[l - 1] == w->n_in[l])
            QD_CHECK(add(ms, lin->hkey, NULL, l - 1, QD__AWQ_LIN, l, key_is, lin->hkey));
        if (lin->kind == QD_LIN_Q_B && w->q_a_norm)
            QD_CHECK(add(ms, lin->hkey, w->q_a_norm, -1, QD__AWQ_LIN, l, key_is, lin->hkey));
        if (lin->kind == QD_LIN_KV_B && w->kv_a_norm)
            QD_CHECK(add(ms, lin->hkey, w->kv_a_norm, -1, QD__AWQ_LIN, l, key_is, lin->hkey));
    }
    QD_CHECK(add(ms, KB, w->ln_post, -1, QD__AWQ_MLP, -1, stage_is, S));
    for (int l = 1; l < w->nlin; l++) /* the table holds each up right before its down */
        if (is_down(w->lin[l].kind) && is_up(w->lin[l - 1].kind) && w->n_out[l - 1] == w->n_in[l])
            QD_CHECK(add(ms, w->lin[l].hkey, NULL, l - 1, QD__AWQ_LIN, l, key_is, w->lin[l].hkey));
    return QD_OK;
}

qd_status qd__awq_maps(const qd_qctx *c, const qd_block_w *w, const qd_qspec *specs, qd__awq_map **out, int *n) {
    maps ms = {.w = w, .specs = specs};
    qd_status st = build(c, &ms);
    if (st != QD_OK) {
        qd__awq_maps_free(ms.m, ms.n);
        return st;
    }
    *out = ms.m, *n = ms.n;
    return QD_OK;
}

void qd__awq_maps_free(qd__awq_map *m, int n) {
    for (int i = 0; m && i < n; i++) free(m[i].lin);
    free(m);
}
