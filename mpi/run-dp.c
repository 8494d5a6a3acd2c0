/* SPDX-License-Identifier: MIT
 * run-dp.c - the data-parallel layout (--parallel data): every rank owns a contiguous share of the
 * calibration sequences (whole chunks) and keeps their activations on its device for the whole run;
 * every rank passes every block, forwarding its sequences, while the quantize context reduces the
 * Hessians and splits each Linear's solve over the ranks (src/quant/gptq-dp.c). Block b is staged by
 * rank b % P; rank 0 exports.
 */
#include <signal.h>
#include <stdio.h>

#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-param.h"
#include "run-internal.h"

qd_status qd_run_plan_dp(const qd_model *m, qd_plan *plan) {
    int size = qd_mpi_size(), nb = qd_model_cfg_of(m)->nlayers;
    if (size > QD_PLAN_MAX_RANKS)
        return qd_fail(QD_ERR_USAGE, "plan: %d ranks, at most %d", size, QD_PLAN_MAX_RANKS);
    plan->nranks = size, plan->nblocks = nb;
    for (int r = 0; r < size; r++) plan->first[r] = 0, plan->count[r] = nb; /* every rank passes every block */
    return QD_OK;
}

int qd_run_dp_stager(const qd_run *k, int block) { return !k->dp || block % qd_mpi_size() == qd_mpi_rank(); }

/* "rank:block" from the environment matches this (rank, block), as in the pipeline (qd-pipeline.h) */
static int injected(qd_param var, int rank, int block) {
    const char *v = qd_param_str(var);
    int r, b;
    return v && sscanf(v, "%d:%d", &r, &b) == 2 && r == rank && b == block;
}

qd_status qd_run_dp_blocks(qd_run *k, const struct qd_block_worker *w, struct qd_pipeline_stats *ps, int *failed_block) {
    int rank = qd_mpi_rank();
    *failed_block = -1;
    QD_CHECK(w->embed_device(w->user));
    for (int b = 0; b < k->cfg->nlayers; b++) {
        *failed_block = b;
        /* rank 0's view of the staging decides for all: a block is replayed everywhere or nowhere */
        int staged = w->is_staged(w->user, b);
        QD_CHECK(qd_mpi_bcast(&staged, sizeof staged));
        if (staged) {
            QD_CHECK(w->replay(w->user, b));
            ps->replayed += qd_run_dp_stager(k, b);
            continue;
        }
        if (injected(QD_PARAM_INJECT_FAIL, rank, b))
            return qd_fail(QD_ERR_INTERNAL, "block %d: failure injected by QD_INJECT_FAIL", b);
        QD_CHECK(w->quantize(w->user, b));
        ps->quantized += qd_run_dp_stager(k, b);
        if (injected(QD_PARAM_INJECT_KILL, rank, b)) {
            QD_CHECK(w->flush(w->user)); /* "right after the block is staged" (by its stager) */
            raise(SIGKILL);
        }
    }
    QD_CHECK(w->flush(w->user));
    *failed_block = -1;
    return QD_OK;
}
