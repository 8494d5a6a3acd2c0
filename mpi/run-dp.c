/* SPDX-License-Identifier: MIT
 * run-dp.c - the data-parallel layout (--parallel data): every rank owns a contiguous share of the
 * calibration sequences (whole chunks) and keeps their activations on its device for the whole run;
 * every rank passes every block of its stage, forwarding its sequences, while the quantize context
 * reduces the Hessians and splits each Linear's solve over the stage's ranks (src/quant/gptq-dp.c).
 * With S pipeline stages (--pipeline-stages) the stages run one after another (the exact schedule):
 * local rank i of stage s hands its sequences' quantized activations to local rank i of stage s+1,
 * which owns the same share, so the result is the one-stage result. Block b is staged by local rank
 * b % (P/S) of its stage; rank 0 exports.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-param.h"
#include "run-internal.h"

qd_status qd_run_plan_dp(const qd_model *m, int stages, qd_plan *plan) {
    int size = qd_mpi_size(), nb = qd_model_cfg_of(m)->nlayers;
    if (size > QD_PLAN_MAX_RANKS)
        return qd_fail(QD_ERR_USAGE, "plan: %d ranks, at most %d", size, QD_PLAN_MAX_RANKS);
    if (stages <= 1) {
        plan->nranks = size, plan->nblocks = nb;
        for (int r = 0; r < size; r++) plan->first[r] = 0, plan->count[r] = nb; /* every rank passes every block */
        return QD_OK;
    }
    if (stages > nb) /* every rank sees it: rank 0 alone says so */
        return qd_mpi_rank() == 0 ? qd_fail(QD_ERR_USAGE, "--pipeline-stages %d: the model has only %d blocks; "
                                                          "use at most %d stages", stages, nb, nb)
                                  : QD_ERR_USAGE;
    qd_plan st;
    QD_CHECK(qd_run_plan(m, stages, &st)); /* the stages' ranges, balanced by stored bytes */
    int per = size / stages;
    plan->nranks = size, plan->nblocks = nb;
    for (int r = 0; r < size; r++) plan->first[r] = st.first[r / per], plan->count[r] = st.count[r / per];
    return QD_OK;
}

int qd_run_dp_stager(const qd_run *k, int block) {
    return !k->dp || block % k->coll->size == k->coll->rank;
}

/* "rank:block" from the environment matches this (rank, block), as in the pipeline (qd-pipeline.h) */
static int injected(qd_param var, int rank, int block) {
    const char *v = qd_param_str(var);
    int r, b;
    return v && sscanf(v, "%d:%d", &r, &b) == 2 && r == rank && b == block;
}

static qd_status stage_blocks(qd_run *k, const qd_plan *plan, const struct qd_block_worker *w,
                              struct qd_pipeline_stats *ps, int *failed_block) {
    int rank = qd_mpi_rank();
    for (int b = plan->first[rank]; b < plan->first[rank] + plan->count[rank]; b++) {
        *failed_block = b;
        /* the stage's first rank's view of the staging decides for the stage: a block is replayed by
         * every rank of its stage or by none */
        int staged = w->is_staged(w->user, b);
        QD_CHECK(k->coll->bcast(k->coll, &staged, sizeof staged, 0));
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
    return QD_OK;
}

qd_status qd_run_dp_blocks(qd_run *k, const qd_plan *plan, const struct qd_block_worker *w, qd_transport *prev,
                           qd_transport *next, struct qd_pipeline_stats *ps, int *failed_block) {
    int rank = qd_mpi_rank(), per = k->coll->size;
    *failed_block = -1;
    float *act = NULL; /* the stage boundary's activations, in host memory (the transports move host buffers) */
    if (prev || next) {
        act = malloc(w->nseq * w->seq_elems * sizeof(float) + 1);
        if (!act) return qd_fail(QD_ERR_NOMEM, "stage %d: out of memory for %zu activation floats", k->pstage,
                                 w->nseq * w->seq_elems);
    }
    qd_status st = QD_OK;
    if (prev) {
        QD_CHECK_GOTO(qd_pipeline_recv(w, prev, rank - per, act, ps), st, out);
        QD_CHECK_GOTO(w->load(w->user, act), st, out);
    } else {
        QD_CHECK_GOTO(w->embed_device(w->user), st, out);
    }
    /* the stage's ranks compute the same reductions and results: its first rank alone warns and informs
     * (a failure is still reported by the rank that meets it) */
    qd_log_set_replica(k->coll->rank != 0);
    st = stage_blocks(k, plan, w, ps, failed_block);
    qd_log_set_replica(0);
    if (st != QD_OK) goto out;
    QD_CHECK_GOTO(w->flush(w->user), st, out);
    *failed_block = -1;
    if (next) {
        QD_CHECK_GOTO(w->store(w->user, act), st, out);
        QD_CHECK_GOTO(qd_pipeline_send(w, next, rank + per, act, ps), st, out);
    }
out:
    free(act);
    return st;
}
