/* SPDX-License-Identifier: MIT
 * model-handle.c - qd_model: config + architecture + checkpoint, opened and checked once (contract in
 * qd-model-handle.h), with each block's tensors indexed by the architecture's table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-arch.h"
#include "qd-check.h"
#include "qd-log.h"
#include "qd-model-ckpt.h"
#include "qd-model-internal.h"

void qd_model_close(qd_model *m) {
    if (!m) return;
    qd_ckpt_close(m->ck);
    free(m->index);
    free(m->refs);
    free(m->nbt);
    free(m->block_bytes);
    free(m);
}

qd_status qd_model_open(const char *dir, int with_data, qd_model **out) {
    *out = NULL;
    qd_model *m;
    QD_ALLOC(m, 1);
    qd_status st;
    QD_CHECK_GOTO(qd_model_cfg_load(dir, &m->cfg), st, fail);
    QD_CHECK_GOTO(qd_ckpt_open(dir, with_data, &m->ck), st, fail);
    QD_CHECK_GOTO(qd_model_check_ckpt(&m->cfg, m->ck, 0), st, fail);
    const size_t nb = (size_t)m->cfg.nlayers, nt = qd_model_max_block_tensors(&m->cfg);
    m->ntper = nt;
    m->index = calloc(nb * nt + 1, sizeof *m->index);
    m->refs = calloc(nb * nt + 1, sizeof *m->refs);
    m->nbt = calloc(nb + 1, sizeof *m->nbt);
    m->block_bytes = calloc(nb + 1, sizeof *m->block_bytes);
    if (!m->index || !m->refs || !m->nbt || !m->block_bytes) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory for the tensor index of %zu blocks", dir, nb);
        goto fail;
    }
    char name[320];
    for (size_t b = 0; b < nb; b++) {
        m->nbt[b] = qd_model_block_tensors(&m->cfg, (int)b, m->refs + b * nt, nt);
        for (size_t i = 0; i < m->nbt[b]; i++) {
            snprintf(name, sizeof name, "model.layers.%zu.%s", b, m->refs[b * nt + i].suffix);
            m->index[b * nt + i] = qd_ckpt_find(m->ck, name);
        }
    }
    /* every tensor of a block counts, quantized forms and extras included: what a rank will read */
    for (size_t i = 0; i < m->ck->ntensors; i++) {
        int b = -1;
        const qd_st_tensor *t = m->ck->tensors[i];
        m->total_bytes += t->nbytes;
        if (qd_model_classify(&m->cfg, t->name, &b, NULL, 0) == QD_PART_BLOCK && b >= 0) m->block_bytes[b] += t->nbytes;
    }
    *out = m;
    return QD_OK;
fail:
    qd_model_close(m);
    return st;
}

const qd_model_cfg *qd_model_cfg_of(const qd_model *m) { return &m->cfg; }
const char *qd_model_dir(const qd_model *m) { return m->ck->dir; }
const qd_checkpoint *qd_model_ckpt(const qd_model *m) { return m->ck; }
uint64_t qd_model_total_bytes(const qd_model *m) { return m->total_bytes; }

uint64_t qd_model_block_bytes(const qd_model *m, int b) {
    return b >= 0 && b < m->cfg.nlayers ? m->block_bytes[b] : 0;
}
