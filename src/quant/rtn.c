/* SPDX-License-Identifier: MIT
 * rtn.c - round-to-nearest: each group's min-max parameters (optionally the MSE grid), no error
 * feedback. The reported loss is sum (w - q)^2 / 2, GPTQ's loss with Hinv = I. */
#include <stdlib.h>
#include <time.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-quant.h"

qd_status qd_rtn_layer(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                       qd_qresult *out) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t G;
    QD_CHECK(qd_qspec_groups(s, name, K, &G));
    QD_CHECK(qd_check_finite(be, W, 0, N * K, "the weight", name));
    qd_buf_t Q = NULL, codes = NULL, scales = NULL, zeros = NULL;
    int32_t *g_idx = NULL;
    qd_status st;
    QD_CHECK_GOTO(qd_buf_alloc(be, N * K, &Q), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, N * K, &codes), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, G * N, &scales), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, G * N, &zeros), st, done);
    size_t gs = G == 1 ? K : (size_t)s->group_size;
    QD_CHECK_GOTO(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = qd_qspec_qcfg(s), .W = QD_REF(W, 0),
                                                                .Q = QD_REF(Q, 0), .codes = QD_REF(codes, 0),
                                                                .scales = QD_REF(scales, 0), .zeros = QD_REF(zeros, 0),
                                                                .N = N, .K = K, .ldw = K, .group_size = gs}),
                  st, done);
    double sq;
    QD_CHECK_GOTO(qd_be_reduce(be, &(struct qd_reduce_args){.kind = QD_RED_SQDIFF, .a = QD_REF(W, 0), .b = QD_REF(Q, 0),
                                                            .n = N * K, .out = &sq}), st, done);
    g_idx = malloc(K * sizeof *g_idx);
    if (!g_idx) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory", name);
        goto done;
    }
    for (size_t k = 0; k < K; k++) g_idx[k] = (int32_t)(k / gs);
    QD_CHECK_GOTO(qd_qresult_fetch(be, s, name, codes, scales, zeros, g_idx, N, K, G, out), st, done);
    QD_CHECK_GOTO(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(W, 0), .src = QD_REF(Q, 0), .rows = 1,
                                                        .cols = N * K, .ldd = N * K, .lds = N * K}), st, done);
    out->s.loss = sq / 2;
    out->s.damp = -1;
    out->s.fallback[0] = 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->s.seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
done:
    free(g_idx);
    qd_buf_free(Q), qd_buf_free(codes), qd_buf_free(scales), qd_buf_free(zeros);
    return st;
}
