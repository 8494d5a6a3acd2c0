/* SPDX-License-Identifier: MIT
 * collective-check.h - the checks both collective tables must pass (test-collective.c: MPI on the
 * CPU; test-collective-nccl.c: NCCL on GPUs), written once. */
#ifndef QD_TEST_COLLECTIVE_CHECK_H
#define QD_TEST_COLLECTIVE_CHECK_H

#include <stdlib.h>
#include <string.h>

#include "qd-collective.h"
#include "qd-test.h"

#define N 1000

/* rank r contributes r + 1 + i to element i (and 0.5 to see fractions survive): the sum over P ranks
 * is P(P+1)/2 + P i + P/2 */
static inline void check_acc64(const qd_collective *c, qd_backend_t be) {
    int P = c->size, r = c->rank;
    qd_buf_t acc = NULL, x = NULL;
    QD_EXPECT_EQ_INT(qd_buf_alloc(be, 2 * N, &acc), QD_OK);
    QD_EXPECT_EQ_INT(qd_buf_alloc(be, N, &x), QD_OK);
    float *h = malloc(N * sizeof *h);
    for (int i = 0; i < N; i++) h[i] = (float)(r + 1 + i) + 0.5f;
    QD_EXPECT_EQ_INT(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(x, 0), .src = h, .src_dtype = QD_DT_F32,
                                                               .n = N}), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_acc64(be, &(struct qd_acc64_args){.kind = QD_ACC64_ADD, .acc = QD_REF(acc, 0),
                                                             .x = QD_REF(x, 0), .n = N}), QD_OK);
    QD_EXPECT_EQ_INT(c->allreduce_acc64(c, be, QD_REF(acc, 0), N), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_acc64(be, &(struct qd_acc64_args){.kind = QD_ACC64_ROUND, .acc = QD_REF(acc, 0),
                                                             .x = QD_REF(x, 0), .n = N}), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(x, 0), .dst = h, .n = N}), QD_OK);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += h[i] != (float)(P * (P + 1) / 2 + P * i) + 0.5f * (float)P;
    QD_EXPECT_EQ_INT(bad, 0);
    free(h);
    qd_buf_free(acc), qd_buf_free(x);
}

static inline void check_host_ops(const qd_collective *c) {
    int P = c->size, r = c->rank;
    double v[2] = {r, 1};
    QD_EXPECT_EQ_INT(c->allreduce_f64(c, v, 2), QD_OK);
    QD_EXPECT(v[0] == P * (P - 1) / 2.0 && v[1] == P);
    size_t *counts = calloc((size_t)P, sizeof *counts), total = 0;
    for (int q = 0; q < P; q++) counts[q] = (size_t)q + 1, total += counts[q];
    char mine[64], *all = calloc(total, 1);
    memset(mine, 'a' + r, sizeof mine);
    QD_EXPECT_EQ_INT(c->allgatherv(c, mine, counts, all), QD_OK);
    size_t at = 0;
    int bad = 0;
    for (int q = 0; q < P; q++)
        for (size_t i = 0; i < counts[q]; i++) bad += all[at++] != 'a' + q;
    QD_EXPECT_EQ_INT(bad, 0);
    int root_value = r == P - 1 ? 42 : 0;
    QD_EXPECT_EQ_INT(c->bcast(c, &root_value, sizeof root_value, P - 1), QD_OK);
    QD_EXPECT_EQ_INT(root_value, 42);
    free(counts), free(all);
}

/* rank s sends rank d (s + 2d) % 3 + s bytes of value 16 s + d: some pairs send none, ranks differ */
static inline size_t a2a_bytes(int s, int d) { return (size_t)((s + 2 * d) % 3 + s); }

static inline void check_alltoallv(const qd_collective *c) {
    int P = c->size, r = c->rank;
    size_t *sc = calloc((size_t)P, sizeof *sc), *rc = calloc((size_t)P, sizeof *rc), st = 0, rt = 0;
    for (int q = 0; q < P; q++) sc[q] = a2a_bytes(r, q), rc[q] = a2a_bytes(q, r), st += sc[q], rt += rc[q];
    char *send = malloc(st + 1), *recv = malloc(rt + 1);
    size_t at = 0;
    for (int q = 0; q < P; q++)
        for (size_t i = 0; i < sc[q]; i++) send[at++] = (char)(16 * r + q);
    memset(recv, 0x7f, rt + 1);
    QD_EXPECT_EQ_INT(c->alltoallv(c, send, sc, recv, rc), QD_OK);
    int bad = 0;
    at = 0;
    for (int q = 0; q < P; q++)
        for (size_t i = 0; i < rc[q]; i++) bad += recv[at++] != (char)(16 * q + r);
    QD_EXPECT_EQ_INT(bad, 0);
    QD_EXPECT(recv[rt] == 0x7f); /* nothing written past the counts */
    free(sc), free(rc), free(send), free(recv);
}

#endif
