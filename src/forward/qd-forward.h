/* SPDX-License-Identifier: MIT
 * qd-forward.h - the decoder forward of Llama / Mistral / Qwen2 / Qwen3 (docs/reference/algorithms.md section 3),
 * written once over the backend interface, in fp32 on the device whatever the storage dtype.
 *
 * A block's weights (qd_block_w) and the model's ends (qd_head) come from the loader
 * (src/model/qd-model-handle.h): the forward reads no file. Activations
 * are [nseq * seq_len, hidden] row-major; every sequence starts at position 0. A qd_fwd holds the
 * rope tables and the scratch buffers for up to max_seqs sequences of seq_len tokens.
 *
 * Capture: block forward calls capture(user, lin, x, rows) with the input of each Linear (x [rows,
 * in_features]); Linears sharing an input (q/k/v, gate/up) are reported once, with the first of them.
 * stop_after >= 0 returns right after the capture of that Linear (true-sequential collection does not
 * need the rest of the block). Captured buffers are scratch: copy what must outlive the callback.
 */
#ifndef QD_FORWARD_H
#define QD_FORWARD_H

#include <stddef.h>

#include "qd-backend.h"
#include "qd-model-handle.h"

typedef struct qd_fwd qd_fwd;
qd_status qd_fwd_create(qd_backend_t be, const qd_model_cfg *cfg, size_t seq_len, size_t max_seqs, qd_fwd **out);
void qd_fwd_free(qd_fwd *f);
size_t qd_fwd_seq_len(const qd_fwd *f);
size_t qd_fwd_max_seqs(const qd_fwd *f);

/* cos/sin [seq_len, head_dim/2] on the host, as transformers computes them in fp32 (default, linear,
 * llama3 and yarn rope; yarn's attention_factor is folded into both tables). */
qd_status qd_rope_tables(const qd_model_cfg *cfg, size_t seq_len, float *cos_out, float *sin_out);
/* The same for a rotary dimension dim (MLA: qk_rope_head_dim) and rope r. */
qd_status qd_rope_tables_dim(const qd_rope *r, size_t dim, size_t seq_len, float *cos_out, float *sin_out);

/* lin: the Linear's index in the block's table (w->lin) */
typedef qd_status (*qd_capture_fn)(void *user, int lin, qd_ref x, size_t rows);

/* One chunk's routing (per expert: its tokens, ascending, and their weights), kept by the caller between
 * passes over the same MLP input (qd_fwd_h REUSE): a later pass skips the router GEMM, the logits'
 * download and the top-k. qd_moe_forward fills an empty one and reads a full one; clear frees it. */
typedef struct qd_route_keep {
    int32_t *idx;
    float *wt;
    size_t *cnt, *off; /* [experts], [experts + 1] */
    int full;
} qd_route_keep;
void qd_route_keep_clear(qd_route_keep *k);

/* Mixture-of-experts blocks (moe.c): the router's input (all tokens) is captured with the router, the
 * shared expert's with its gate_proj; expert e's gate/up input is the gathered rows of the tokens routed
 * to it ([n_e, hidden], nothing when n_e = 0) and its down input [n_e, moe_intermediate] - or every
 * token's, for the statistics only, when all[e] is set (the output always uses the model's routing).
 * stop_after on any Linear of a stage returns once every capture of that stage is made. */
struct qd_moe_calib {
    const unsigned char *all; /* [experts] or NULL */
    size_t *tokens;           /* [experts] or NULL: routed tokens added per expert */
    /* A forward that stops after an MoE stage computes only what that stage's captures need: capture
     * [experts] (NULL: every expert) names the experts whose inputs are wanted (the others are neither
     * gathered nor computed), and no_shared 1 leaves the shared expert out of the down stage. */
    const unsigned char *capture;
    int no_shared;
    qd_route_keep *keep; /* or NULL: the routing is computed and dropped */
};

/* The post-attention residual sum h of a block forward: COMPUTE (the attention runs, h in scratch);
 * SAVE (the same, h left in out: for passes that stop in the MLP, which then never write out); REUSE
 * (h read from out, where a SAVE pass of the same input left it, and the attention skipped: its weights
 * must be unchanged since). SAVE and REUSE need out != x. */
typedef enum { QD_FWD_H_COMPUTE = 0, QD_FWD_H_SAVE, QD_FWD_H_REUSE } qd_fwd_h;

struct qd_block_fwd_args {
    const qd_block_w *w;
    qd_ref x;             /* [nseq*seq_len, hidden] input */
    qd_ref out;           /* same shape; may equal x */
    size_t nseq;          /* <= max_seqs */
    qd_capture_fn capture; /* optional */
    void *user;
    int stop_after;       /* -1: whole block; else a Linear index: return after capturing it */
    struct qd_moe_calib moe;
    qd_fwd_h h_mode;      /* where the MLP input's residual sum h = x + attention(x) comes from */
};
qd_status qd_block_forward(qd_fwd *f, const struct qd_block_fwd_args *a);

/* The pieces AWQ measures its loss on, from an already normalised input n [nseq*seq_len, hidden]:
 * attention module (q/k/v, q/k norm, rope, attention, o_proj; an MLA model's: mla.c) and MLP
 * (gate/up, SwiGLU, down). */
qd_status qd_attn_forward(qd_fwd *f, const qd_block_w *w, qd_ref n, qd_ref out, size_t nseq,
                          qd_capture_fn capture, void *user, int stop_after, int *stopped);
qd_status qd_mlp_forward(qd_fwd *f, const qd_block_w *w, qd_ref n, qd_ref out, size_t rows,
                         qd_capture_fn capture, void *user, int stop_after, int *stopped);
/* The mixture-of-experts MLP (router, top-k, experts, shared expert) of an MoE block; moe may be NULL. */
qd_status qd_moe_forward(qd_fwd *f, const qd_block_w *w, qd_ref n, qd_ref out, size_t rows, qd_capture_fn capture,
                         void *user, int stop_after, const struct qd_moe_calib *moe, int *stopped);
/* 1 when w is a mixture-of-experts block (its table holds a router) */
int qd_block_is_moe(const qd_block_w *w);
/* y [rows, out] = x [rows, in] W^T + b, for Linear lin (table index) of the block. */
qd_status qd_linear_forward(qd_backend_t be, const qd_block_w *w, int lin, qd_ref x, qd_ref y, size_t rows);
/* HF RMSNorm of x [rows, hidden] with weight w into out. */
qd_status qd_norm_forward(qd_backend_t be, const qd_model_cfg *cfg, qd_buf_t weight, qd_ref x, qd_ref out,
                          size_t rows);

#endif
