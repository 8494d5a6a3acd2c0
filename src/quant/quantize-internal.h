/* SPDX-License-Identifier: MIT
 * quantize-internal.h - the block driver's context (qctx.c), shared by quantize.c (RTN, GPTQ), awq.c
 * and replay.c. */
#ifndef QD_QUANTIZE_INTERNAL_H
#define QD_QUANTIZE_INTERNAL_H

#include "qd-collective.h"
#include "qd-quantize.h"

struct qd_qctx {
    qd_backend_t be;
    const qd_model_cfg *cfg;
    qd_quantize_opts o;
    qd_fwd *fwd;          /* NULL without calibration */
    size_t chunk_seqs;
    int nh;               /* Hessian keys (qd_model_max_hkeys) */
    qd_buf_t *H;          /* [nh] Hessian per key (qd_linear.hkey) */
    size_t *gK;           /* [nh] input features of each key, set from each block's table */
    int *reduced;         /* [nh] H[key] holds its total (qd__hess_total, or the all-token copy) this stage */
    size_t *expert_tokens;     /* [experts] MoE: tokens routed to each expert (this block) */
    unsigned char *expert_all; /* [experts] MoE: Hessians from every token (--moe-calibration all or fallback) */
    qd_buf_t Hc;          /* a copy for groups of several Linears */
    qd_buf_t cache[4];    /* AWQ: every calibration input of each group [rows, gK] */
    qd_buf_t fp_out, trial_out; /* AWQ: loss-module outputs [rows, hidden] */
    qd_buf_t att, hres, act;    /* GPTQ resident forward: o / post-attention residual / down inputs, all rows */
    qd_buf_t xn, y;             /* per-chunk scratch [chunk rows, max(hidden, heads*head_dim)] */
    /* data-parallel ranks (gptq-dp.c): o.nseq is this rank's share, nseq_total the calibration's */
    const qd_collective *coll;
    size_t nseq_total;
    qd_buf_t *Hacc;             /* [nh] fast numerics: key g's Hessian as fp64 sums (qd_be_acc64), until rounded */
    qd_buf_t Hs;                /* exact numerics: one slab's Hessian, from zero */
    float **slabs;              /* [nh] exact numerics: this rank's slab Hessians per key, in slab order */
    size_t *nslabs;
    double *kv_amax;            /* --kv-cache: [2 * nkv] the block's key then value maxima per KV head */
};

/* Data-parallel GPTQ (gptq-dp.c). hess_slab: exact numerics, one slab's (chunk's) Hessian alpha X^T X
 * from zero, kept until qd__hess_total, which folds every slab in slab order (the same bits for every
 * rank count). gptq_apply: qd_gptq_apply on this rank's share of the output rows, the
 * results gathered so that every rank holds the whole Linear's. */
/* Data-parallel AWQ (awq-dp.c). local_slabs: this rank's chunks. exact: coll and exact numerics (sums
 * per slab). sum: in [nslabs][n] this rank's per-slab sums; exact - folded with every rank's in slab
 * order into out[n]; else folded in fp64 here and all-reduced into out (coll NULL: this rank's fold).
 * clip_tokens: AWQ's sampled tokens t * step (t < T, global rows) of group g's inputs, gathered from
 * every rank into X [T, K]. */
size_t qd__dp_local_slabs(const qd_qctx *c);
int qd__dp_exact(const qd_qctx *c);
qd_status qd__dp_sum(qd_qctx *c, const double *in, size_t nslabs, size_t n, double *out);
qd_status qd__dp_clip_tokens(qd_qctx *c, int g, size_t step, size_t T, qd_buf_t X);

qd_status qd__dp_hess_slab(qd_qctx *c, int g, qd_ref x, size_t rows, float alpha);
/* group g's Hessian complete in c->H[g]: exact numerics with ranks, the slabs folded (as above); fast
 * numerics, the fp64 sums all-reduced over the ranks and rounded to fp32 once, so every chunk layout
 * and rank count gives the same H up to fp64 rounding; exact numerics alone: H is already complete. */
qd_status qd__hess_total(qd_qctx *c, int g);
qd_status qd__dp_gptq_apply(qd_qctx *c, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                            const qd_gptq_fac *f, qd_qresult *out);

/* --kv-cache (kv-observe.c): the block's key/value maxima into c->kv_amax, reduced over the ranks */
qd_status qd__kv_observe(qd_qctx *c, const qd_block_w *w, qd_buf_t inputs);
/* forward every chunk of inputs through block w into outputs (capture / stop_after as in qd-forward.h) */
qd_status qd__forward_all(qd_qctx *c, const qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_capture_fn cap, void *user,
                          int stop_after);
/* the same with the MoE calibration settings (qd-forward.h qd_moe_calib) */
qd_status qd__forward_all_moe(qd_qctx *c, const qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_capture_fn cap,
                              void *user, int stop_after, const struct qd_moe_calib *moe);
/* replace w->w[l] by r's dequantization with the scale dtype of the export */
qd_status qd__install(qd_qctx *c, qd_block_w *w, int l, const qd_qresult *r);
/* the input features of every Hessian key of block w (c->gK) */
void qd__set_keys(qd_qctx *c, const qd_block_w *w);
/* the first Linear of stage g in w's table (a forward's stop_after), -1 when none */
int qd__stage_first(const qd_block_w *w, int g);

/* Mixture-of-experts blocks (moe-quant.c). moe_gptq: GPTQ of an MoE block, stage by stage (need: bit g
 * when stage g has a GPTQ Linear), every expert with its own Hessians, the --moe-calibration rules and
 * the --moe-min-tokens fallback (gptq_stage quantizes the Linears of one stage from the Hessians made).
 * moe_output: the quantized block's output with the model's routing, and each expert Linear's routed
 * token count into its results (summed over the ranks). */
typedef qd_status (*qd__stage_fn)(qd_qctx *c, qd_block_w *w, int g, const qd_qspec *specs, char (*names)[128],
                                  qd_qresult *results);
typedef struct qd__hess_cap { /* quantize.c's Hessian capture (hess) */
    qd_qctx *c;
    const qd_block_w *w;
    unsigned groups;               /* bit g: accumulate the Linears of stage g */
    const unsigned char *skip_key; /* NULL or [nh]: keys not accumulated (MoE: taken from the all-token key) */
    float alpha;
} qd__hess_cap;
qd_status qd__moe_gptq(qd_qctx *c, qd_block_w *w, qd_buf_t in, qd_buf_t out, const qd_qspec *specs,
                       char (*names)[128], qd_qresult *results, unsigned need, qd_capture_fn hess, qd__hess_cap *h,
                       qd__stage_fn gptq_stage);
qd_status qd__moe_output(qd_qctx *c, qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_qresult *results);
qd_status qd__ensure_H(qd_qctx *c, int key);

#endif
