/* SPDX-License-Identifier: MIT
 * awq-internal.h - AWQ for one block (awq.c), called by the block driver (quantize.c): search the
 * scales and clips, install the quantized weights, and leave the full-precision block output in
 * outputs (AWQ hands on the unmodified chain, docs/numerics.md section 5).
 *
 * The block's mappings come from its Linear table (awq-map.c): a dense block's four (AutoAWQ's), an
 * MLA block's three attention ones, an MoE block's one over every expert's gate/up (with the router
 * and shared_expert_gate folded, not quantized) and one up -> down per expert and shared expert.
 * The inputs they need are kept per Hessian key (awq-cache.c, quantize-internal.h qd__awq_in). */
#ifndef QD_AWQ_INTERNAL_H
#define QD_AWQ_INTERNAL_H

#include "quantize-internal.h"

qd_status qd__awq_block(qd_qctx *c, qd_block_w *w, qd_buf_t inputs, qd_buf_t outputs, qd_qresult *results);

/* what a mapping's loss is measured on: the attention module (q/k/v or MLA's q_a/kv_a onwards) or the
 * MLP (dense or mixture of experts) from the cached normed input, or one Linear on its cached input */
typedef enum { QD__AWQ_ATTN, QD__AWQ_MLP, QD__AWQ_LIN } qd__awq_loss;

typedef struct {
    int key;          /* the Hessian key whose cached input every Linear in lin reads */
    int *lin, nlin;   /* table indices: each quantized one is searched; every one gets W *= s */
    qd_buf_t norm;    /* the norm before them (weight /= s), or NULL */
    int prev;         /* else the Linear before them (its rows /= s) */
    qd__awq_loss loss;
    int loss_lin;     /* QD__AWQ_LIN: the Linear */
} qd__awq_map;

/* the mappings of block w into *out (n entries, freed by qd__awq_maps_free); a mapping whose Linears
 * are all left unquantized (specs skip), or v -> o under GQA, is left out */
qd_status qd__awq_maps(const qd_qctx *c, const qd_block_w *w, const qd_qspec *specs, qd__awq_map **out, int *n);
void qd__awq_maps_free(qd__awq_map *m, int n);

/* awq-cache.c: one full-precision forward of the block (outputs: the next block's input) keeping every
 * key's input; an MoE block's expert inputs from a second pass of its MLP over the cached router input,
 * with the --moe-calibration / --moe-min-tokens rules (c->expert_all: the experts that take every token) */
qd_status qd__awq_capture(qd_qctx *c, const qd_block_w *w, qd_buf_t inputs, qd_buf_t outputs);
/* key's cache after aliases (an all-token expert's gate/up read the router's input) */
qd__awq_in *qd__awq_in_of(qd_qctx *c, int key);
/* the key of expert e's gate/up input and whether e took the all-token statistics */
int qd__awq_expert_all(const qd_qctx *c, int e);

#endif
