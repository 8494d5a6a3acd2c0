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
    int *reduced;         /* [nh] H[key] holds its total (qd__hess_total) this stage */
    int *hsrc;            /* [nh] the key whose Hessian key k's Linears take: k itself, or (MoE experts taking the
                           * all-token statistics) the all-token key, whose one factorization they share */
    size_t *expert_tokens;     /* [experts] MoE: tokens routed to each expert (this block) */
    unsigned char *expert_all; /* [experts] MoE: Hessians from every token (--moe-calibration all or fallback) */
    qd_buf_t Hc;          /* a copy for groups of several Linears */
    struct qd__awq_in *ain;     /* [nh] AWQ: every calibration input of each key (awq-cache.c), or NULL */
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
    /* expert parallel (moe-ep.c): ep 1 when this run spreads experts over the ranks (qd__ep_choose) */
    int ep;
    int *expert_owner;          /* [experts] the rank that solves each expert of this block */
    unsigned char *key_local;   /* [nh] 0: data parallel; 1: complete and solved whole here; 2: another rank's */
    double *kv_amax;            /* --kv-cache: [2 * nkv] the block's key then value maxima per KV head */
    int h_in_out;               /* MoE GPTQ: the block (index) whose post-attention residual sum the output
                                 * buffer holds (moe-quant.c), -1 for none */
    qd_route_keep *keeps;       /* [chunks] MoE: each chunk's routing of that block's MLP input, or NULL */
    size_t nkeeps;
};

/* AWQ's kept inputs of one Hessian key: this rank's rows, slab (chunk) i's at off[i] .. off[i + 1]
 * (a routed expert's slabs hold the tokens of that chunk routed to it, possibly none) */
typedef struct qd__awq_in {
    qd_buf_t buf;   /* [rows, K] */
    size_t K, rows;
    size_t *off;    /* [local slabs + 1] */
    size_t total;   /* rows over every rank */
    int alias;      /* >= 0: this key reads that key's cache (an all-token expert's gate/up) */
} qd__awq_in;

/* Data-parallel GPTQ (gptq-dp.c). hess_slab: exact numerics, one slab's (chunk's) Hessian alpha X^T X
 * from zero, kept until qd__hess_total, which folds every slab in slab order (the same bits for every
 * rank count). gptq_apply: qd_gptq_apply on this rank's share of the output rows, the
 * results gathered so that every rank holds the whole Linear's. */
/* Data-parallel AWQ (awq-dp.c). local_slabs: this rank's chunks. exact: coll and exact numerics (sums
 * per slab). sum: in [nslabs][n] this rank's per-slab sums; exact - folded with every rank's in slab
 * order into out[n]; else folded in fp64 here and all-reduced into out (coll NULL: this rank's fold).
 * clip_tokens: AWQ's sampled rows t * step (t < T, rows numbered over the ranks in rank order) of
 * the kept inputs a, gathered from every rank into X [T, K]. */
size_t qd__dp_local_slabs(const qd_qctx *c);
int qd__dp_exact(const qd_qctx *c);
qd_status qd__dp_sum(qd_qctx *c, const double *in, size_t nslabs, size_t n, double *out);
qd_status qd__dp_clip_tokens(qd_qctx *c, const qd__awq_in *a, size_t step, size_t T, qd_buf_t X);

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
/* the same with the MoE calibration settings (qd-forward.h qd_moe_calib) and where the MLP input's
 * residual sum comes from (qd-forward.h qd_fwd_h) */
qd_status qd__forward_all_moe(qd_qctx *c, const qd_block_w *w, qd_buf_t in, qd_buf_t out, qd_capture_fn cap,
                              void *user, int stop_after, const struct qd_moe_calib *moe, qd_fwd_h h_mode);
/* the output buffer holds nothing kept (h_in_out -1) and the kept routings are given back */
void qd__h_forget(qd_qctx *c);
/* replace w->w[l] by r's dequantization with the scale dtype of the export; r->dev_codes (when set) is
 * what it dequantizes on the device, and is freed (NULL afterwards) whatever the outcome */
qd_status qd__install(qd_qctx *c, qd_block_w *w, int l, qd_qresult *r);
/* the input features of every Hessian key of block w (c->gK) */
void qd__set_keys(qd_qctx *c, const qd_block_w *w);
/* the first Linear of stage g in w's table (a forward's stop_after), -1 when none */
int qd__stage_first(const qd_block_w *w, int g);

/* Mixture-of-experts blocks (moe-quant.c). moe_gptq: GPTQ of an MoE block, stage by stage (need: bit g
 * when stage g has a GPTQ Linear), every expert with its own Hessians, the --moe-calibration rules and
 * the --moe-min-tokens fallback; the experts' Hessians in batches of at most o.moe_hess_bytes
 * (gptq_stage quantizes the Linears of stage g whose Hessian key, c->hsrc[hkey], is set in keys [nh]
 * (NULL: every key), from the Hessians made).
 * moe_output: the quantized block's output with the model's routing, and each expert Linear's routed
 * token count into its results (summed over the ranks). */
typedef qd_status (*qd__stage_fn)(qd_qctx *c, qd_block_w *w, int g, const qd_qspec *specs, char (*names)[128],
                                  qd_qresult *results, const unsigned char *keys);
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

/* Expert parallel (moe-ep.c; the scheme in its header). choose: 1 when this run uses it (o's
 * expert_parallel, data-parallel ranks, an MoE model; auto by the bytes moved). owners: every expert's
 * owner (c->expert_owner) from the reduced routed counts and c->expert_all. A stage's forward captures
 * through qd__ep_capture with a box (expert rows kept on the host, every other Linear straight to hess);
 * deliver: the rows to their owners, which replay them into hess (gate_up: the stage of gate/up, whose
 * all-token experts are quantized with key KB's factorization instead), and sets c->key_local; after the stage's solve, share: the
 * owners' results installed on every rank, key_local cleared. moe-quant.c's mlp_stage_ep drives these
 * per MLP stage. */
typedef struct qd__ep_box qd__ep_box;
int qd__ep_choose(const qd_model_cfg *cfg, const qd_quantize_opts *o);
qd_status qd__ep_owners(qd_qctx *c);
qd_status qd__ep_box_new(qd_qctx *c, const qd_block_w *w, qd_capture_fn hess, qd__hess_cap *h, qd__ep_box **out);
void qd__ep_box_free(qd__ep_box *b);
qd_status qd__ep_capture(void *user, int lin, qd_ref x, size_t rows);
qd_status qd__ep_deliver(qd__ep_box *b, int g, int gate_up);
qd_status qd__ep_share(qd_qctx *c, qd_block_w *w, int g, const qd_qspec *specs, qd_qresult *results);
/* SmoothQuant (smooth.c, c->o.smooth): observe the block's two normed inputs over in (every rank's
 * maxima), fold the per-channel scales into the norms and the Linears reading them (w changed in place;
 * specs: which Linears are quantized). scratch receives a partial forward (the caller overwrites it). */
/* nvfp4 (fp4-fuse.c): every nvfp4 Linear's fp4_global from its weight's amax (w as it is now), one
 * for the members of each group vLLM fuses into one layer (q/k/v, gate/up, w1/w3, q_a/kv_a) from the
 * amax of all their weights */
qd_status qd__fp4_fuse_globals(qd_qctx *c, const qd_block_w *w, qd_qspec *specs, char (*names)[128]);
/* fp8-static (static-scales.c): wants - some Linear of the block has the scheme; input_scales - their
 * input_scale from one forward of the quantized block over in (every rank's maxima). */
int qd__wants_static_scales(const qd_block_w *w, const qd_qspec *specs);
qd_status qd__static_input_scales(qd_qctx *c, const qd_block_w *w, qd_buf_t in, const qd_qspec *specs,
                                  qd_qresult *results);
qd_status qd__smooth_block(qd_qctx *c, qd_block_w *w, qd_buf_t in, qd_buf_t scratch, const qd_qspec *specs);

#endif
