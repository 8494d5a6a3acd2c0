/* SPDX-License-Identifier: MIT
 * mla.c - multi-head latent attention over the backend ops (contract in qd-mla.h). */
#include "qd-mla.h"

#include <stdint.h>
#include <stdlib.h>

#include "qd-check.h"
#include "qd-log.h"

enum { S_QA, S_Q, S_CKV, S_KVN, S_KV, S_ROT, S_ROT2, S_K, S_V, S_ATT, S_AO, S_PERM, S_N };

/* y [rows, out] = x [rows, in] (row stride ldx) W^T (+ b) */
static qd_status linear(qd_backend_t be, qd_buf_t w, qd_buf_t b, qd_ref x, size_t ldx, qd_ref y, size_t rows,
                        size_t in, size_t out) {
    QD_CHECK(qd_be_gemm(be, &(struct qd_gemm_args){.trans_b = 1, .M = rows, .N = out, .K = in, .alpha = 1, .A = x,
                                                   .B = QD_REF(w, 0), .C = y, .lda = ldx, .ldb = in, .ldc = out}));
    if (!b) return QD_OK;
    return qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_ADD_ROWV, .out = y, .x = y, .v = QD_REF(b, 0),
                                                   .rows = rows, .cols = out, .ld = out});
}

static qd_status cap(const struct qd_mla_args *a, qd_mla_lin l, qd_ref x, size_t rows, size_t cols) {
    return a->capture ? a->capture(a->user, l, x, rows, cols) : QD_OK;
}
/* capture, then return when the caller asked to stop there */
#define CAP(l, x, rows, cols)                                                                                        \
    do {                                                                                                             \
        QD_CHECK(cap(a, l, x, rows, cols));                                                                          \
        if (a->stop && *a->stop) return QD_OK;                                                                       \
    } while (0)

/* rotate the rope dims: src [rows*heads, rope] (contiguous), de-interleaved through tmp when asked */
static qd_status rotate(qd_backend_t be, const struct qd_mla_args *a, qd_buf_t *s, size_t rows, size_t heads) {
    size_t R = (size_t)a->c->qk_rope_head_dim;
    qd_ref x = QD_REF(s[S_ROT], 0);
    if (a->c->rope_interleave) {
        QD_CHECK(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_COLS, .dst = QD_REF(s[S_ROT2], 0),
                                                             .src = x, .perm = QD_REF(s[S_PERM], 0),
                                                             .rows = rows * heads, .cols = R}));
        x = QD_REF(s[S_ROT2], 0);
    }
    QD_CHECK(qd_be_rope(be, &(struct qd_rope_args){.x = x, .cos = a->cos, .sin = a->sin, .rows = rows, .heads = heads,
                                                   .head_dim = R, .ld = heads * R, .seq_len = a->seq_len}));
    if (x.buf != s[S_ROT])
        QD_CHECK(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(s[S_ROT], 0), .src = x, .rows = 1,
                                                       .cols = rows * heads * R, .ldd = rows * heads * R,
                                                       .lds = rows * heads * R}));
    return QD_OK;
}

static qd_status run(qd_backend_t be, const struct qd_mla_args *a, qd_buf_t *s) {
    const qd_dsv3_cfg *c = a->c;
    const qd_mla_w *w = a->w;
    size_t T = a->nseq * a->seq_len, Hd = (size_t)a->hidden, H = (size_t)a->heads;
    size_t NP = (size_t)c->qk_nope_head_dim, R = (size_t)c->qk_rope_head_dim, V = (size_t)c->v_head_dim;
    size_t QK = NP + R, QL = (size_t)c->q_lora_rank, KL = (size_t)c->kv_lora_rank;
    /* q */
    CAP(QD_MLA_Q_A, a->x, T, Hd);
    qd_ref q = QD_REF(s[S_Q], 0);
    if (QL) {
        qd_ref qa = QD_REF(s[S_QA], 0);
        QD_CHECK(linear(be, w->w[QD_MLA_Q_A], w->b[QD_MLA_Q_A], a->x, Hd, qa, T, Hd, QL));
        QD_CHECK(qd_be_rmsnorm(be, &(struct qd_rmsnorm_args){.out = qa, .x = qa, .weight = QD_REF(w->q_a_norm, 0),
                                                             .rows = T, .dim = QL, .ld = QL, .eps = 1e-6f}));
        CAP(QD_MLA_Q_B, qa, T, QL);
        QD_CHECK(linear(be, w->w[QD_MLA_Q_B], NULL, qa, QL, q, T, QL, H * QK));
    } else {
        QD_CHECK(linear(be, w->w[QD_MLA_Q_A], w->b[QD_MLA_Q_A], a->x, Hd, q, T, Hd, H * QK));
    }
    /* the latent and the shared rope key */
    qd_ref ckv = QD_REF(s[S_CKV], 0), kvn = QD_REF(s[S_KVN], 0), kv = QD_REF(s[S_KV], 0);
    QD_CHECK(linear(be, w->w[QD_MLA_KV_A], w->b[QD_MLA_KV_A], a->x, Hd, ckv, T, Hd, KL + R));
    QD_CHECK(qd_be_copy(be, &(struct qd_copy_args){.dst = kvn, .src = ckv, .rows = T, .cols = KL, .ldd = KL,
                                                   .lds = KL + R}));
    QD_CHECK(qd_be_rmsnorm(be, &(struct qd_rmsnorm_args){.out = kvn, .x = kvn, .weight = QD_REF(w->kv_a_norm, 0),
                                                         .rows = T, .dim = KL, .ld = KL, .eps = 1e-6f}));
    CAP(QD_MLA_KV_B, kvn, T, KL);
    QD_CHECK(linear(be, w->w[QD_MLA_KV_B], NULL, kvn, KL, kv, T, KL, H * (NP + V)));
    /* Q: rotate each head's rope dims in place */
    QD_CHECK(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(s[S_ROT], 0), .src = QD_REF(s[S_Q], NP),
                                                   .rows = T * H, .cols = R, .ldd = R, .lds = QK}));
    QD_CHECK(rotate(be, a, s, T, H));
    QD_CHECK(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(s[S_Q], NP), .src = QD_REF(s[S_ROT], 0),
                                                   .rows = T * H, .cols = R, .ldd = QK, .lds = R}));
    /* K: each head's nope part from kv, then the one rotated rope key */
    QD_CHECK(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(s[S_K], 0), .src = kv, .rows = T * H, .cols = NP,
                                                   .ldd = QK, .lds = NP + V}));
    QD_CHECK(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(s[S_ROT], 0), .src = QD_REF(s[S_CKV], KL),
                                                   .rows = T, .cols = R, .ldd = R, .lds = KL + R}));
    QD_CHECK(rotate(be, a, s, T, 1));
    for (size_t h = 0; h < H; h++)
        QD_CHECK(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(s[S_K], h * QK + NP), .src = QD_REF(s[S_ROT], 0),
                                                       .rows = T, .cols = R, .ldd = H * QK, .lds = R}));
    /* V zero-padded to the qk width */
    QD_CHECK(qd_be_fill(be, &(struct qd_fill_args){.dst = QD_REF(s[S_V], 0), .n = T * H * QK, .value = 0}));
    QD_CHECK(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(s[S_V], 0), .src = QD_REF(s[S_KV], NP),
                                                   .rows = T * H, .cols = V, .ldd = QK, .lds = NP + V}));
    QD_CHECK(qd_be_attention(be, &(struct qd_attention_args){.out = QD_REF(s[S_ATT], 0), .q = q,
                                                             .k = QD_REF(s[S_K], 0), .v = QD_REF(s[S_V], 0),
                                                             .nseq = a->nseq, .seq_len = a->seq_len, .heads = H,
                                                             .kv_heads = H, .head_dim = QK, .scale = a->scale}));
    qd_ref ao = QD_REF(s[S_AO], 0);
    QD_CHECK(qd_be_copy(be, &(struct qd_copy_args){.dst = ao, .src = QD_REF(s[S_ATT], 0), .rows = T * H, .cols = V,
                                                   .ldd = V, .lds = QK}));
    CAP(QD_MLA_O, ao, T, H * V);
    return linear(be, w->w[QD_MLA_O], w->b[QD_MLA_O], ao, H * V, a->out, T, H * V, Hd);
}

qd_status qd_mla_forward(qd_backend_t be, const struct qd_mla_args *a) {
    const qd_dsv3_cfg *c = a->c;
    size_t T = a->nseq * a->seq_len, H = (size_t)a->heads, R = (size_t)c->qk_rope_head_dim;
    size_t QK = (size_t)c->qk_head_dim, KL = (size_t)c->kv_lora_rank, V = (size_t)c->v_head_dim;
    size_t NP = (size_t)c->qk_nope_head_dim, QL = (size_t)c->q_lora_rank;
    if (R % 2 || QK != NP + R || !a->w->w[QD_MLA_Q_A] || !a->w->w[QD_MLA_KV_A] || !a->w->w[QD_MLA_KV_B] ||
        !a->w->w[QD_MLA_O] || !a->w->kv_a_norm || (QL && (!a->w->w[QD_MLA_Q_B] || !a->w->q_a_norm)))
        return qd_fail(QD_ERR_INTERNAL, "mla: weights or sizes inconsistent with the config");
    const size_t len[S_N] = {
        [S_QA] = T * (QL ? QL : 1), [S_Q] = T * H * QK, [S_CKV] = T * (KL + R), [S_KVN] = T * KL,
        [S_KV] = T * H * (NP + V), [S_ROT] = T * H * R, [S_ROT2] = T * H * R, [S_K] = T * H * QK,
        [S_V] = T * H * QK, [S_ATT] = T * H * QK, [S_AO] = T * H * V, [S_PERM] = R,
    };
    qd_buf_t s[S_N] = {0};
    qd_status st = QD_OK;
    for (int i = 0; i < S_N && st == QD_OK; i++) st = qd_buf_alloc(be, len[i], &s[i]);
    if (st == QD_OK) { /* de-interleave: the even dims, then the odd ones */
        int32_t perm[4096];
        for (size_t j = 0; j < R / 2; j++) perm[j] = (int32_t)(2 * j), perm[R / 2 + j] = (int32_t)(2 * j + 1);
        st = R <= 4096 ? qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(s[S_PERM], 0), .src = perm,
                                                                   .src_dtype = QD_DT_I32, .n = R})
                       : qd_fail(QD_ERR_UNSUPPORTED, "mla: qk_rope_head_dim %zu above 4096", R);
    }
    if (st == QD_OK) st = run(be, a, s);
    for (int i = 0; i < S_N; i++) qd_buf_free(s[i]);
    return st;
}
