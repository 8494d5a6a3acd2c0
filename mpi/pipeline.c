/* SPDX-License-Identifier: MIT */
#include "qd-pipeline.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-clock.h"
#include "qd-param.h"
#include "qd-phase.h"

#define TAG_BASE 1000

/* "rank:block" from the environment matches this (rank, block) */
static int injected(qd_param var, int rank, int block) {
    const char *v = qd_param_str(var);
    int r, b;
    return v && sscanf(v, "%d:%d", &r, &b) == 2 && r == rank && b == block;
}

static size_t nbatches(const struct qd_block_worker *w) {
    size_t mb = w->micro_batch ? w->micro_batch : 1;
    return (w->nseq + mb - 1) / mb;
}

static void batch_range(const struct qd_block_worker *w, size_t i, size_t *first, size_t *count) {
    size_t mb = w->micro_batch ? w->micro_batch : 1;
    *first = i * mb;
    *count = w->nseq - *first < mb ? w->nseq - *first : mb;
}

/* Post receives for every micro-batch from rank-1. */
static qd_status post_recvs(const struct qd_block_worker *w, qd_transport *t, int peer, float *act, qd_xfer *x) {
    for (size_t i = 0; i < nbatches(w); i++) {
        size_t first, count;
        batch_range(w, i, &first, &count);
        QD_CHECK(qd_transport_irecv(t, act + first * w->seq_elems, count * w->seq_elems * sizeof(float), peer,
                                    TAG_BASE + (int)i, &x[i]));
    }
    return QD_OK;
}

qd_status qd_pipeline_send(const struct qd_block_worker *w, qd_transport *t, int peer, const float *act,
                          struct qd_pipeline_stats *st) {
    size_t n = nbatches(w);
    qd_xfer *x = calloc(n, sizeof *x);
    if (!x) return qd_fail(QD_ERR_NOMEM, "pipeline: out of memory");
    qd_status rc = QD_OK;
    for (size_t i = 0; i < n && rc == QD_OK; i++) {
        size_t first, count;
        batch_range(w, i, &first, &count);
        rc = qd_transport_isend(t, act + first * w->seq_elems, count * w->seq_elems * sizeof(float), peer,
                                TAG_BASE + (int)i, &x[i]);
    }
    double t0 = qd_clock_s();
    qd_phase prev = qd_phase_set(NULL, QD_PH_WAIT);
    for (size_t i = 0; i < n; i++) {
        qd_status r2 = qd_transport_wait(t, &x[i]);
        if (rc == QD_OK) rc = r2;
    }
    qd_phase_set(NULL, prev);
    st->wait_s += qd_clock_s() - t0;
    free(x);
    return rc;
}

qd_status qd_pipeline_recv(const struct qd_block_worker *w, qd_transport *t, int peer, float *act,
                          struct qd_pipeline_stats *st) {
    size_t n = nbatches(w);
    qd_xfer *x = calloc(n, sizeof *x);
    if (!x) return qd_fail(QD_ERR_NOMEM, "pipeline: out of memory");
    qd_status rc = post_recvs(w, t, peer, act, x);
    double t0 = qd_clock_s();
    qd_phase prev = qd_phase_set(NULL, QD_PH_WAIT);
    for (size_t i = 0; i < n; i++) {
        qd_status r2 = qd_transport_wait(t, &x[i]);
        if (rc == QD_OK) rc = r2;
    }
    qd_phase_set(NULL, prev);
    st->wait_s += qd_clock_s() - t0;
    free(x);
    return rc;
}

/* Quantize (or replay) this rank's blocks in order, starting from act (loaded: the worker already
 * holds the input, embedded on its device); keep_output: the last block's output back into act. */
static qd_status run_blocks(const qd_plan *plan, int rank, const struct qd_block_worker *w, float *act, int loaded,
                            int keep_output, struct qd_pipeline_stats *st, int *failed_block) {
    if (!loaded) QD_CHECK(w->load(w->user, act));
    for (int b = plan->first[rank]; b < plan->first[rank] + plan->count[rank]; b++) {
        *failed_block = b;
        if (w->is_staged(w->user, b)) {
            QD_CHECK(w->replay(w->user, b));
            st->replayed++;
        } else {
            if (injected(QD_PARAM_INJECT_FAIL, rank, b))
                return qd_fail(QD_ERR_INTERNAL, "block %d: failure injected by QD_INJECT_FAIL", b);
            QD_CHECK(w->quantize(w->user, b));
            st->quantized++;
            if (injected(QD_PARAM_INJECT_KILL, rank, b)) {
                if (w->flush) QD_CHECK(w->flush(w->user)); /* "right after the block is staged" */
                raise(SIGKILL);
            }
        }
    }
    if (w->flush) QD_CHECK(w->flush(w->user));
    *failed_block = -1;
    if (keep_output) QD_CHECK(w->store(w->user, act));
    return QD_OK;
}

/* Overlap schedule, first pass: full-precision activations through this rank's blocks, one
 * micro-batch at a time, forwarded to rank+1 as soon as each batch is done. act_in keeps this rank's
 * boundary input for the quantization pass. */
static qd_status fp_pass(const qd_plan *plan, int rank, const struct qd_block_worker *w, float *act_in,
                         float *work, qd_transport *prev, qd_transport *next, struct qd_pipeline_stats *st,
                         int *failed_block) {
    size_t n = nbatches(w);
    qd_xfer *rx = calloc(n, sizeof *rx), *tx = calloc(n, sizeof *tx);
    qd_status rc = QD_OK;
    if (!rx || !tx) {
        rc = qd_fail(QD_ERR_NOMEM, "pipeline: out of memory");
        goto out;
    }
    if (prev) QD_CHECK_GOTO(post_recvs(w, prev, rank - 1, act_in, rx), rc, out);
    else QD_CHECK_GOTO(w->embed(w->user, act_in), rc, out);
    for (size_t i = 0; i < n; i++) {
        size_t first, count;
        batch_range(w, i, &first, &count);
        double t0 = qd_clock_s();
        qd_phase ph = qd_phase_set(NULL, QD_PH_WAIT);
        if (prev) rc = qd_transport_wait(prev, &rx[i]);
        qd_phase_set(NULL, ph);
        st->wait_s += qd_clock_s() - t0;
        if (rc != QD_OK) goto out;
        if (!next) continue; /* the last rank needs no full-precision output */
        float *dst = work + first * w->seq_elems;
        memcpy(dst, act_in + first * w->seq_elems, count * w->seq_elems * sizeof(float));
        for (int b = plan->first[rank]; b < plan->first[rank] + plan->count[rank]; b++) {
            *failed_block = b;
            QD_CHECK_GOTO(w->forward_fp(w->user, b, dst, count), rc, out);
        }
        *failed_block = -1;
        QD_CHECK_GOTO(qd_transport_isend(next, dst, count * w->seq_elems * sizeof(float), rank + 1,
                                         TAG_BASE + (int)i, &tx[i]),
                      rc, out);
    }
out:
    if (rx && tx) {
        double t0 = qd_clock_s();
        qd_phase ph = qd_phase_set(NULL, QD_PH_WAIT);
        for (size_t i = 0; i < n; i++) {
            if (prev) qd_transport_wait(prev, &rx[i]);
            if (next) qd_transport_wait(next, &tx[i]);
        }
        qd_phase_set(NULL, ph);
        st->wait_s += qd_clock_s() - t0;
    }
    free(rx);
    free(tx);
    return rc;
}

/* The activations cross ranks in host buffers (malloc in qd_pipeline_run): GPU ranks stage them
 * through host memory. When they move to device buffers, this says so and NCCL is chosen. */
int qd_pipeline_device_buffers(void) { return 0; }

qd_status qd_pipeline_run(const qd_plan *plan, int rank, qd_schedule sched, const struct qd_block_worker *w,
                          qd_transport *prev, qd_transport *next, struct qd_pipeline_stats *stats,
                          int *failed_block) {
    memset(stats, 0, sizeof *stats);
    *failed_block = -1;
    size_t total = w->nseq * w->seq_elems;
    float *act = malloc(total * sizeof(float) + 1);
    if (!act) return qd_fail(QD_ERR_NOMEM, "pipeline: out of memory for %zu activation floats", total);
    qd_status rc = QD_OK;
    if (sched == QD_SCHED_EXACT) {
        /* the first rank embeds straight into its device activations when it can: no host round trip */
        int on_device = !prev && w->embed_device;
        if (prev) QD_CHECK_GOTO(qd_pipeline_recv(w, prev, rank - 1, act, stats), rc, out);
        else if (on_device) QD_CHECK_GOTO(w->embed_device(w->user), rc, out);
        else QD_CHECK_GOTO(w->embed(w->user, act), rc, out);
        QD_CHECK_GOTO(run_blocks(plan, rank, w, act, on_device, next != NULL, stats, failed_block), rc, out);
        if (next) QD_CHECK_GOTO(qd_pipeline_send(w, next, rank + 1, act, stats), rc, out);
    } else {
        float *work = next ? malloc(total * sizeof(float) + 1) : NULL;
        if (next && !work) {
            rc = qd_fail(QD_ERR_NOMEM, "pipeline: out of memory for %zu activation floats", total);
            goto out;
        }
        rc = fp_pass(plan, rank, w, act, work, prev, next, stats, failed_block);
        free(work);
        if (rc == QD_OK) rc = run_blocks(plan, rank, w, act, 0, 0, stats, failed_block);
    }
out:
    free(act);
    return rc;
}
