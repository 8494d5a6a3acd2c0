/* SPDX-License-Identifier: MIT
 * qd-forward.h - the decoder forward of Llama / Mistral / Qwen2 / Qwen3 (docs/reference/algorithms.md section 3),
 * written once over the backend interface, in fp32 on the device whatever the storage dtype.
 *
 * A block's weights (qd_block_w) are device buffers the caller owns and may modify (the quantizers
 * replace a Linear's weight by its dequantized value, AWQ rescales norms and weights). Activations
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
#include "qd-model.h"
#include "qd-safetensors.h"

typedef enum { QD_LIN_Q, QD_LIN_K, QD_LIN_V, QD_LIN_O, QD_LIN_GATE, QD_LIN_UP, QD_LIN_DOWN, QD_NLIN } qd_lin;
const char *qd_lin_name(qd_lin l);  /* "self_attn.q_proj", ... (qd_model_linear_names order) */
int qd_lin_group(qd_lin l);         /* true-sequential group: [q,k,v]=0 [o]=1 [gate,up]=2 [down]=3 */
qd_lin qd_lin_group_first(int group); /* the Linear whose capture carries the group's input */

typedef struct qd_block_w {
    int index;
    qd_buf_t ln_in, ln_post;        /* [hidden] */
    qd_buf_t q_norm, k_norm;        /* [head_dim], Qwen3 only (else NULL) */
    qd_buf_t w[QD_NLIN];            /* [out, in] fp32 */
    qd_buf_t b[QD_NLIN];            /* [out] or NULL */
    size_t n_out[QD_NLIN], n_in[QD_NLIN];
} qd_block_w;

/* Load block `index` from a checkpoint opened with map_data, checking every shape against cfg.
 * A quantized checkpoint layer (no "<prefix>.weight") is refused naming the tensor. */
qd_status qd_block_w_load(qd_backend_t be, const qd_model_cfg *cfg, const qd_checkpoint *ck, int index,
                          qd_block_w *out);
void qd_block_w_free(qd_block_w *w);

typedef struct qd_fwd qd_fwd;
qd_status qd_fwd_create(qd_backend_t be, const qd_model_cfg *cfg, size_t seq_len, size_t max_seqs, qd_fwd **out);
void qd_fwd_free(qd_fwd *f);
size_t qd_fwd_seq_len(const qd_fwd *f);
size_t qd_fwd_max_seqs(const qd_fwd *f);

/* cos/sin [seq_len, head_dim/2] on the host, as transformers computes them in fp32 (default, linear
 * and llama3 rope). */
qd_status qd_rope_tables(const qd_model_cfg *cfg, size_t seq_len, float *cos_out, float *sin_out);

typedef qd_status (*qd_capture_fn)(void *user, qd_lin lin, qd_ref x, size_t rows);

struct qd_block_fwd_args {
    const qd_block_w *w;
    qd_ref x;             /* [nseq*seq_len, hidden] input */
    qd_ref out;           /* same shape; may equal x */
    size_t nseq;          /* <= max_seqs */
    qd_capture_fn capture; /* optional */
    void *user;
    int stop_after;       /* -1: whole block; else a qd_lin: return after capturing it */
};
qd_status qd_block_forward(qd_fwd *f, const struct qd_block_fwd_args *a);

/* The pieces AWQ measures its loss on, from an already normalised input n [nseq*seq_len, hidden]:
 * attention module (q/k/v, q/k norm, rope, attention, o_proj) and MLP (gate/up, SwiGLU, down). */
qd_status qd_attn_forward(qd_fwd *f, const qd_block_w *w, qd_ref n, qd_ref out, size_t nseq,
                          qd_capture_fn capture, void *user, int stop_after, int *stopped);
qd_status qd_mlp_forward(qd_fwd *f, const qd_block_w *w, qd_ref n, qd_ref out, size_t rows,
                         qd_capture_fn capture, void *user, int stop_after, int *stopped);
/* y [rows, out] = x [rows, in] W^T + b, for Linear lin of the block. */
qd_status qd_linear_forward(qd_backend_t be, const qd_block_w *w, qd_lin lin, qd_ref x, qd_ref y, size_t rows);
/* HF RMSNorm of x [rows, hidden] with weight w into out. */
qd_status qd_norm_forward(qd_backend_t be, const qd_model_cfg *cfg, qd_buf_t weight, qd_ref x, qd_ref out,
                          size_t rows);

/* The model's ends: embedding rows (gathered on the host, converted to fp32), the final norm and
 * lm_head (tied to the embedding when tie_word_embeddings). */
typedef struct qd_head {
    const qd_model_cfg *cfg;
    const qd_checkpoint *ck;
    const qd_st_tensor *embed;
    qd_buf_t norm;        /* [hidden] */
    qd_buf_t lm_head;     /* [vocab, hidden] */
} qd_head;
qd_status qd_head_load(qd_backend_t be, const qd_model_cfg *cfg, const qd_checkpoint *ck, int with_lm_head,
                       qd_head *out);
void qd_head_free(qd_head *h);
/* x [n, hidden] (device) = embedding rows of ids; ids outside the vocabulary are refused. */
qd_status qd_embed(qd_backend_t be, const qd_head *h, const int32_t *ids, size_t n, qd_ref x);

#endif
