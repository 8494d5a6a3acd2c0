/* SPDX-License-Identifier: MIT
 * The block pipeline over real MPI ranks (run under mpirun -n 1..4) with a toy block worker whose
 * "quantize" and "full-precision forward" differ, so the two schedules give different, checkable
 * results. Every block's quantization input is recorded; rank 0 then recomputes both schedules
 * serially from their definitions and compares bit for bit. A second run in the same process with
 * every block already "staged" must replay and reproduce the same outputs. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-bootstrap.h"
#include "qd-pipeline.h"
#include "qd-test.h"

#define NBLOCKS 7
#define NSEQ 5
#define SEQ_ELEMS 6

struct toy {
    float act[NSEQ * SEQ_ELEMS]; /* the worker's own copy, as a device would hold it */
    double in_sum[NBLOCKS]; /* checksum of each block's quantization input (this rank's blocks) */
    int staged[NBLOCKS];
    int quantized_calls;
};

static void fp_block(int b, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] * 0.75f + 0.1f * (float)(b + 1);
}

/* the "quantized" block: the fp block followed by rounding to a coarse grid */
static void q_block(int b, float *x, size_t n) {
    fp_block(b, x, n);
    for (size_t i = 0; i < n; i++) x[i] = rintf(x[i] * 8.0f) / 8.0f;
}

static double checksum(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)(i % 7 + 1);
    return s;
}

static void embed_values(float *act) {
    for (size_t i = 0; i < NSEQ * SEQ_ELEMS; i++) act[i] = (float)((i * 37) % 11) / 3.0f - 1.0f;
}

static qd_status t_embed(void *u, float *act) {
    (void)u;
    embed_values(act);
    return QD_OK;
}
static qd_status t_fwd(void *u, int b, float *act, size_t nseq) {
    (void)u;
    fp_block(b, act, nseq * SEQ_ELEMS);
    return QD_OK;
}
static qd_status t_load(void *u, const float *act) {
    memcpy(((struct toy *)u)->act, act, sizeof(float) * NSEQ * SEQ_ELEMS);
    return QD_OK;
}
static qd_status t_store(void *u, float *act) {
    memcpy(act, ((struct toy *)u)->act, sizeof(float) * NSEQ * SEQ_ELEMS);
    return QD_OK;
}
static qd_status t_quant(void *u, int b) {
    struct toy *t = u;
    float *act = t->act;
    t->in_sum[b] = checksum(act, NSEQ * SEQ_ELEMS);
    q_block(b, act, NSEQ * SEQ_ELEMS);
    t->staged[b] = 1;
    t->quantized_calls++;
    return QD_OK;
}
static qd_status t_replay(void *u, int b) {
    struct toy *t = u;
    float *act = t->act;
    t->in_sum[b] = checksum(act, NSEQ * SEQ_ELEMS);
    q_block(b, act, NSEQ * SEQ_ELEMS);
    return QD_OK;
}
static int t_staged(void *u, int b) { return ((struct toy *)u)->staged[b]; }

/* serial definitions of both schedules: the expected quantization input checksum of every block */
static void expected(const qd_plan *p, qd_schedule s, double *out) {
    float act[NSEQ * SEQ_ELEMS];
    embed_values(act);
    for (int r = 0; r < p->nranks; r++) {
        float start[NSEQ * SEQ_ELEMS];
        memcpy(start, act, sizeof act);
        float *chain = (s == QD_SCHED_EXACT) ? act : start;
        for (int b = p->first[r]; b < p->first[r] + p->count[r]; b++) {
            out[b] = checksum(chain, NSEQ * SEQ_ELEMS);
            q_block(b, chain, NSEQ * SEQ_ELEMS);
        }
        if (s == QD_SCHED_OVERLAP)
            for (int b = p->first[r]; b < p->first[r] + p->count[r]; b++) fp_block(b, act, NSEQ * SEQ_ELEMS);
    }
}

static void run_schedule(qd_schedule s, size_t micro_batch) {
    int rank = qd_mpi_rank(), size = qd_mpi_size();
    uint64_t cost[NBLOCKS] = {3, 1, 4, 1, 5, 9, 2};
    qd_plan plan;
    QD_EXPECT_EQ_INT(qd_plan_make(NBLOCKS, cost, 1, 1, size, &plan), QD_OK);
    struct qd_transport_probe pr = {.rank = rank};
    qd_transport *prev = NULL, *next = NULL;
    if (rank > 0) {
        pr.peer = rank - 1;
        QD_EXPECT_EQ_INT(qd_transport_select(&pr, &prev), QD_OK);
    }
    if (rank < size - 1) {
        pr.peer = rank + 1;
        QD_EXPECT_EQ_INT(qd_transport_select(&pr, &next), QD_OK);
    }
    struct toy t;
    memset(&t, 0, sizeof t);
    struct qd_block_worker w = {.user = &t, .nseq = NSEQ, .seq_elems = SEQ_ELEMS, .micro_batch = micro_batch,
                                .embed = t_embed, .forward_fp = t_fwd, .load = t_load, .store = t_store, .quantize = t_quant,
                                .replay = t_replay, .is_staged = t_staged};
    double want[NBLOCKS];
    expected(&plan, s, want);
    for (int pass = 0; pass < 2; pass++) { /* pass 1: every block staged -> replay */
        struct qd_pipeline_stats st;
        int fb;
        memset(t.in_sum, 0, sizeof t.in_sum);
        QD_EXPECT_EQ_INT(qd_pipeline_run(&plan, rank, s, &w, prev, next, &st, &fb), QD_OK);
        double all[NBLOCKS];
        MPI_Allreduce(t.in_sum, all, NBLOCKS, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        for (int b = 0; b < NBLOCKS; b++) QD_EXPECT(all[b] == want[b]);
        QD_EXPECT_EQ_INT(st.quantized, pass == 0 ? plan.count[rank] : 0);
        QD_EXPECT_EQ_INT(st.replayed, pass == 0 ? 0 : plan.count[rank]);
    }
    qd_transport_free(prev);
    qd_transport_free(next);
}

static void test_exact(void) { run_schedule(QD_SCHED_EXACT, 2); }
static void test_overlap(void) { run_schedule(QD_SCHED_OVERLAP, 2); }
static void test_overlap_one_seq_batches(void) { run_schedule(QD_SCHED_OVERLAP, 1); }

static void test_schedules_differ(void) {
    /* with more than one rank the overlap schedule must give other inputs than exact */
    if (qd_mpi_size() < 2) return;
    uint64_t cost[NBLOCKS] = {3, 1, 4, 1, 5, 9, 2};
    qd_plan plan;
    qd_plan_make(NBLOCKS, cost, 1, 1, qd_mpi_size(), &plan);
    double a[NBLOCKS], b[NBLOCKS];
    expected(&plan, QD_SCHED_EXACT, a);
    expected(&plan, QD_SCHED_OVERLAP, b);
    QD_EXPECT(a[NBLOCKS - 1] != b[NBLOCKS - 1]);
}

int main(int argc, char **argv) {
    if (qd_mpi_start(&argc, &argv) != QD_OK) return 1;
    QD_RUN(test_exact);
    QD_RUN(test_overlap);
    QD_RUN(test_overlap_one_seq_batches);
    QD_RUN(test_schedules_differ);
    int fails = qd_test_failures, all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    qd_test_failures = all;
    int rc = qd_mpi_rank() == 0 ? QD_TEST_END() : (all ? 1 : 0);
    qd_mpi_stop();
    return rc;
}
