/* SPDX-License-Identifier: MIT
 * lm.c - the whole model forward: embed -> blocks -> final norm, and lm_head on demand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-lm.h"
#include "qd-log.h"

void qd_lm_close(qd_lm *lm) {
    if (!lm) return;
    if (lm->blocks)
        for (int i = 0; i < lm->cfg.nlayers; i++) qd_block_w_free(&lm->blocks[i]);
    free(lm->blocks);
    qd_head_free(&lm->head);
    qd_fwd_free(lm->fwd);
    qd_buf_free(lm->x);
    qd_buf_free(lm->y);
    free(lm);
}

qd_status qd_lm_open(qd_backend_t be, const qd_model *m, size_t seq_len, size_t max_seqs, qd_lm **out) {
    qd_lm *lm;
    QD_ALLOC(lm, 1);
    lm->be = be;
    snprintf(lm->dir, sizeof lm->dir, "%s", qd_model_dir(m));
    lm->model = m;
    lm->cfg = *qd_model_cfg_of(m);
    qd_status st;
    QD_CHECK_GOTO(qd_model_head_load(be, lm->model, 1, &lm->head), st, fail);
    lm->blocks = calloc((size_t)lm->cfg.nlayers, sizeof *lm->blocks);
    if (!lm->blocks) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory for %d blocks", lm->dir, lm->cfg.nlayers);
        goto fail;
    }
    for (int i = 0; i < lm->cfg.nlayers; i++) QD_CHECK_GOTO(qd_model_block_load(be, lm->model, i, &lm->blocks[i]), st, fail);
    QD_CHECK_GOTO(qd_fwd_create(be, &lm->cfg, seq_len, max_seqs, &lm->fwd), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, seq_len * max_seqs * (size_t)lm->cfg.hidden, &lm->x), st, fail);
    QD_CHECK_GOTO(qd_buf_alloc(be, seq_len * max_seqs * (size_t)lm->cfg.hidden, &lm->y), st, fail);
    *out = lm;
    return QD_OK;
fail:
    qd_lm_close(lm);
    return st;
}

qd_status qd_lm_forward(qd_lm *lm, const int32_t *ids, size_t nseq) {
    size_t rows = nseq * qd_fwd_seq_len(lm->fwd);
    if (nseq > qd_fwd_max_seqs(lm->fwd)) return qd_fail(QD_ERR_INTERNAL, "lm: %zu sequences > capacity", nseq);
    QD_CHECK(qd_embed(lm->be, &lm->head, ids, rows, QD_REF(lm->x, 0)));
    for (int i = 0; i < lm->cfg.nlayers; i++)
        QD_CHECK(qd_block_forward(lm->fwd, &(struct qd_block_fwd_args){.w = &lm->blocks[i], .x = QD_REF(lm->x, 0),
                                                                       .out = QD_REF(lm->x, 0), .nseq = nseq,
                                                                       .stop_after = -1}));
    QD_CHECK(qd_norm_forward(lm->be, &lm->cfg, lm->head.norm, QD_REF(lm->x, 0), QD_REF(lm->y, 0), rows));
    size_t H = (size_t)lm->cfg.hidden;
    return qd_be_copy(lm->be, &(struct qd_copy_args){.dst = QD_REF(lm->x, 0), .src = QD_REF(lm->y, 0), .rows = 1,
                                                     .cols = rows * H, .ldd = rows * H, .lds = rows * H});
}

qd_status qd_lm_logits(qd_lm *lm, size_t row0, size_t rows, qd_ref logits) {
    size_t H = (size_t)lm->cfg.hidden, V = (size_t)lm->cfg.vocab;
    return qd_be_gemm(lm->be, &(struct qd_gemm_args){.trans_b = 1, .M = rows, .N = V, .K = H, .alpha = 1, .beta = 0,
                                                     .A = QD_REF(lm->x, row0 * H), .B = QD_REF(lm->head.lm_head, 0),
                                                     .C = logits, .lda = H, .ldb = H, .ldc = V});
}
