/* SPDX-License-Identifier: MIT
 * qd-lm.h - a whole causal LM on a backend: every block's weights and the head, loaded from a model
 * handle the caller opened (with its data) and keeps open while the qd_lm lives.
 *
 * Holds all weights in fp32 on the device (eval of models that fit; the quantize driver streams one
 * block at a time instead). qd_lm_forward runs nseq windows of seq_len token ids to the final-norm
 * hidden states; qd_lm_logits turns rows of them into logits with lm_head.
 */
#ifndef QD_LM_H
#define QD_LM_H

#include "qd-forward.h"

typedef struct qd_lm {
    qd_backend_t be;
    char dir[1024];   /* the model directory, for messages */
    qd_model_cfg cfg;
    const qd_model *model; /* the caller's */
    qd_head head;
    qd_block_w *blocks; /* cfg.nlayers */
    qd_fwd *fwd;
    qd_buf_t x, y;      /* [max_seqs * seq_len, hidden] */
} qd_lm;

qd_status qd_lm_open(qd_backend_t be, const qd_model *m, size_t seq_len, size_t max_seqs, qd_lm **out);
void qd_lm_close(qd_lm *lm);
/* ids: nseq * seq_len tokens; on return lm->x holds the final-norm hidden states. */
qd_status qd_lm_forward(qd_lm *lm, const int32_t *ids, size_t nseq);
/* logits [rows, vocab] of hidden rows [row0, row0 + rows) of lm->x */
qd_status qd_lm_logits(qd_lm *lm, size_t row0, size_t rows, qd_ref logits);

#endif
