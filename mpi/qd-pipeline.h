/* SPDX-License-Identifier: MIT
 * qd-pipeline.h - the block pipeline: calibration activations flowing from rank r to rank r+1.
 *
 * Each rank owns the contiguous blocks of the shard plan. Activations are [nseq][seqlen][hidden]
 * fp32 in host buffers (GPU ranks stage them through host memory; qd_pipeline_device_buffers), moved in
 * micro-batches of whole sequences so the receiver computes on one batch while the next arrives.
 *
 * Schedules:
 *  exact   - rank r waits for the QUANTIZED activations of rank r-1's last block, so the result is
 *            byte-identical to a one-rank run (ranks work one after another).
 *  overlap - a first, cheap pass forwards the FULL-PRECISION activations through all ranks (pipelined
 *            per micro-batch); every rank then quantizes its blocks at once, starting from the
 *            full-precision input at its boundary (inside a shard blocks stay sequential).
 * A block already staged (resume) is not quantized again: `replay` runs its quantized forward.
 *
 * The worker callbacks do the block work (src/quant). Failure injection for tests: QD_INJECT_FAIL=
 * "rank:block" makes that rank fail before quantizing that block; QD_INJECT_KILL="rank:block" makes it
 * SIGKILL itself right after that block is staged.
 */
#ifndef QD_PIPELINE_H
#define QD_PIPELINE_H

#include <stddef.h>

#include "qd-plan.h"
#include "qd-status.h"
#include "qd-transport.h"

typedef enum { QD_SCHED_EXACT, QD_SCHED_OVERLAP } qd_schedule;

struct qd_block_worker {
    void *user;
    size_t nseq;           /* calibration sequences */
    size_t seq_elems;      /* floats per sequence: seqlen * hidden */
    size_t micro_batch;    /* sequences per transfer (>= 1) */
    /* first rank: act[nseq * seq_elems] = embedded calibration tokens (host) */
    qd_status (*embed)(void *user, float *act);
    /* (optional) first rank, exact schedule: embed straight into the worker's activations (no host copy) */
    qd_status (*embed_device)(void *user);
    /* overlap schedule: forward block b in full precision on nseq host sequences in place */
    qd_status (*forward_fp)(void *user, int block, float *act, size_t nseq);
    /* the worker keeps the activations between this rank's blocks (on its device): load takes the
     * rank's boundary input from the host, store gives back the output of its last block */
    qd_status (*load)(void *user, const float *act);
    qd_status (*store)(void *user, float *act);
    /* quantize block b from the worker's activations, stage the result durably, and leave the input
     * of block b+1 in the worker's activations */
    qd_status (*quantize)(void *user, int block);
    /* block b is staged: leave the output of its quantized forward in the worker's activations */
    qd_status (*replay)(void *user, int block);
    int (*is_staged)(void *user, int block);
    /* (optional) wait until every block quantized so far is staged durably (staging may run behind
     * on an I/O thread); called after this rank's blocks and before a QD_INJECT_KILL */
    qd_status (*flush)(void *user);
};

struct qd_pipeline_stats {
    double wait_s; /* blocked on receives/sends */
    int quantized, replayed;
};

/* 1 when the buffers qd_pipeline_run hands to the transports are device pointers (the probe's
 * device_buffers, qd-transport.h); 0 today: host buffers. */
int qd_pipeline_device_buffers(void);

/* The w->nseq sequences of act to / from rank peer over t, in micro-batches (the exact schedule's
 * hand-over; also the 2-D layout's stage boundary, mpi/run-dp.c); the time blocked adds to st->wait_s. */
qd_status qd_pipeline_send(const struct qd_block_worker *w, qd_transport *t, int peer, const float *act,
                           struct qd_pipeline_stats *st);
qd_status qd_pipeline_recv(const struct qd_block_worker *w, qd_transport *t, int peer, float *act,
                           struct qd_pipeline_stats *st);

/* prev/next: transports to rank-1 / rank+1 (NULL at the ends). Returns the first failure; the
 * caller ends the job (qd_mpi_fatal) so no neighbour waits forever. *failed_block is set to the block
 * in progress at the failure, or -1. */
qd_status qd_pipeline_run(const qd_plan *plan, int rank, qd_schedule sched, const struct qd_block_worker *w,
                          qd_transport *prev, qd_transport *next, struct qd_pipeline_stats *stats,
                          int *failed_block);

#endif
