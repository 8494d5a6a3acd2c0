/* SPDX-License-Identifier: MIT
 * qd-mla.h - DeepSeek-V2/V3 multi-head latent attention (transformers' DeepseekV3Attention), written
 * over the backend ops, fp32, on nseq sequences of seq_len tokens that start at position 0.
 *
 *   q   = q_b_proj(rmsnorm(q_a_proj(x), q_a_layernorm))   or q_proj(x) when q_lora_rank is 0
 *         [T, heads * (nope + rope)]: per head, nope dims then rope dims
 *   ckv = kv_a_proj_with_mqa(x) [T, kv_lora + rope]: the latent, then one rope key shared by all heads
 *   kv  = kv_b_proj(rmsnorm(ckv[:, :kv_lora], kv_a_layernorm)) [T, heads * (nope + v)]
 *   K   = per head (kv's nope part, the shared rope key); V = kv's v part; Q = q
 *   the rope dims of Q and K are rotated (de-interleaved first when rope_interleave), the tables
 *   [seq_len, rope/2] from qd_rope_tables_dim over qk_rope_head_dim (yarn's attention_factor inside)
 *   out = o_proj(causal softmax(Q K^T * scale) V), scale = qk_head_dim^-0.5 * qd_rope_softmax_mscale
 * The two sub-norms use eps 1e-6 whatever rms_norm_eps says (DeepseekV3RMSNorm's default, which the
 * attention does not override). q_a_proj, kv_a_proj_with_mqa and o_proj carry a bias when
 * attention_bias. The backend attention has one head width, so V is zero-padded to qk_head_dim.
 *
 * The block (mla-block.c) wires it: capture reports each Linear's input once: x for q_a/q_proj and kv_a
 * (one group), q_b's and kv_b's normed latents, o_proj's attention output.
 */
#ifndef QD_MLA_H
#define QD_MLA_H

#include <stddef.h>

#include "qd-backend.h"
#include "qd-dsv3.h"

typedef enum { QD_MLA_Q_A, QD_MLA_Q_B, QD_MLA_KV_A, QD_MLA_KV_B, QD_MLA_O, QD_MLA_NLIN } qd_mla_lin;

typedef struct qd_mla_w {
    qd_buf_t w[QD_MLA_NLIN]; /* [out, in] fp32; QD_MLA_Q_A holds q_proj when q_lora_rank is 0 (Q_B NULL) */
    qd_buf_t b[QD_MLA_NLIN]; /* bias or NULL (Q_A, KV_A and O when attention_bias) */
    qd_buf_t q_a_norm;       /* [q_lora_rank], NULL when q_lora_rank is 0 */
    qd_buf_t kv_a_norm;      /* [kv_lora_rank] */
} qd_mla_w;

typedef qd_status (*qd_mla_capture_fn)(void *user, qd_mla_lin lin, qd_ref x, size_t rows, size_t cols);

struct qd_mla_args {
    const qd_dsv3_cfg *c;
    int hidden, heads;
    float scale;            /* the softmax scale (see above) */
    const qd_mla_w *w;
    qd_ref x, out;          /* [nseq*seq_len, hidden] each; may not alias */
    qd_ref cos, sin;        /* [seq_len, qk_rope_head_dim / 2] on the device */
    size_t nseq, seq_len;
    qd_mla_capture_fn capture; /* optional */
    void *user;
    const int *stop;        /* optional: set by capture to return right after it (out not written) */
};
/* Scratch is allocated per call. */
qd_status qd_mla_forward(qd_backend_t be, const struct qd_mla_args *a);

#endif
