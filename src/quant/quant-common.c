/* SPDX-License-Identifier: MIT
 * quant-common.c - what RTN, GPTQ and AWQ share: spec checks, the NaN/Inf guard, fetching results. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-quant.h"

const char *qd_method_name(qd_method m) {
    switch (m) {
    case QD_METHOD_RTN: return "rtn";
    case QD_METHOD_GPTQ: return "gptq";
    case QD_METHOD_AWQ: return "awq";
    }
    return "?";
}

qd_status qd_qspec_groups(const qd_qspec *s, const char *name, size_t K, size_t *G) {
    if (s->bits < 2 || s->bits > 8)
        return qd_fail(QD_ERR_USAGE, "%s: %d bits is not supported (2..8)", name, s->bits);
    if (s->group_size <= 0 || (size_t)s->group_size == K) {
        *G = 1;
        return QD_OK;
    }
    if (K % (size_t)s->group_size)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: group size %d does not divide the %zu input features", name,
                       s->group_size, K);
    *G = K / (size_t)s->group_size;
    return QD_OK;
}

qd_qcfg qd_qspec_qcfg(const qd_qspec *s) {
    return (qd_qcfg){.kind = s->method == QD_METHOD_AWQ ? QD_QZ_AWQ : QD_QZ_MINMAX, .bits = s->bits, .sym = s->sym,
                     .mse = s->method != QD_METHOD_AWQ && s->mse, .mse_norm = 2.4f, .mse_grid = 100,
                     .mse_maxshrink = 0.8f};
}

qd_status qd_check_finite(qd_backend_t be, qd_buf_t buf, size_t off, size_t n, const char *what, const char *name) {
    double bad;
    QD_CHECK(qd_be_reduce(be, &(struct qd_reduce_args){.kind = QD_RED_NONFINITE, .a = QD_REF(buf, off), .n = n,
                                                       .out = &bad}));
    if (bad > 0) return qd_fail(QD_ERR_NUMERIC, "%s: %.0f NaN/Inf values in %s", name, bad, what);
    return QD_OK;
}

qd_status qd_qresult_fetch(qd_backend_t be, const qd_qspec *s, const char *name, qd_buf_t codes, qd_buf_t scales,
                           qd_buf_t zeros, const int32_t *g_idx, size_t N, size_t K, size_t G, qd_qresult *out) {
    qd_qlayer *l = &out->q;
    snprintf(l->name, sizeof l->name, "%s", name);
    snprintf(l->method, sizeof l->method, "%s", qd_method_name(s->method));
    l->bits = s->bits;
    l->group_size = G == 1 ? -1 : s->group_size;
    l->sym = s->sym;
    QD_CHECK(qd_qlayer_alloc(l, (int)N, (int)K, (int)G));
    int32_t *c = malloc(N * K * sizeof *c);
    if (!c) {
        qd_qlayer_free(l);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory fetching codes", name);
    }
    qd_status st;
    QD_CHECK_GOTO(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(codes, 0), .dst = c, .n = N * K}), st, fail);
    QD_CHECK_GOTO(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(scales, 0), .dst = l->scales, .n = G * N}),
                  st, fail);
    QD_CHECK_GOTO(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(zeros, 0), .dst = l->zeros, .n = G * N}),
                  st, fail);
    for (size_t i = 0; i < N * K; i++) l->codes[i] = (uint8_t)c[i];
    memcpy(l->g_idx, g_idx, K * sizeof *g_idx);
    free(c);
    return QD_OK;
fail:
    free(c);
    qd_qlayer_free(l);
    return st;
}
