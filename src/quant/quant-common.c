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

void qd_qspec_apply_scheme(qd_qspec *s) {
    if (s->scheme == QD_SCHEME_WNA16) return;
    s->bits = qd_scheme_bits(s->scheme), s->sym = 1;
    s->group_size = s->scheme == QD_SCHEME_FP8_BLOCK ? QD_FP8_BLOCK_SIZE : -1;
    if (qd_scheme_is_fp8(s->scheme)) s->method = QD_METHOD_RTN, s->act_order = 0, s->static_groups = 0;
    /* fp4: the group scales are found from the whole weight before GPTQ's sweep (static groups) */
    if (qd_scheme_is_fp4(s->scheme))
        s->group_size = qd_scheme_fp4_group(s->scheme), s->method = QD_METHOD_RTN, s->act_order = 0,
        s->static_groups = 1, s->mse = 0;
}

qd_status qd_qspec_check_scheme(const qd_qspec *s, const char *who) {
    if (s->scheme == QD_SCHEME_WNA16) return QD_OK;
    qd_qspec want = *s;
    qd_qspec_apply_scheme(&want);
    if (qd_scheme_gptq_targets(s->scheme) && s->method == QD_METHOD_GPTQ) want.method = QD_METHOD_GPTQ;
    if (want.bits != s->bits || want.sym != s->sym || want.group_size != s->group_size || want.method != s->method ||
        want.act_order != s->act_order || (qd_scheme_is_fp4(s->scheme) && s->mse))
        return qd_fail(QD_ERR_USAGE, "quantize: scheme %s with %d bits, group %d, %s, %s%s%s: the scheme fixes %d-bit "
                       "symmetric weights and their scales (give \"scheme\": \"wna16\" in an override that sets bits)",
                       qd_scheme_name(s->scheme), s->bits, s->group_size, s->sym ? "sym" : "asym",
                       qd_method_name(s->method), s->mse ? ", mse" : "", who, qd_scheme_bits(s->scheme));
    if (s->scheme == QD_SCHEME_W8A8_INT8 && s->method == QD_METHOD_AWQ)
        return qd_fail(QD_ERR_USAGE, "quantize: scheme w8a8-int8 is quantized by rtn or gptq, not awq%s", who);
    return QD_OK;
}

qd_status qd_qspec_groups(const qd_qspec *s, const char *name, size_t K, size_t *G) {
    if (s->scheme == QD_SCHEME_FP8_BLOCK) { /* compressed-tensors pads the last block: so do the groups */
        *G = (K + QD_FP8_BLOCK_SIZE - 1) / QD_FP8_BLOCK_SIZE;
        return QD_OK;
    }
    if (qd_scheme_is_fp4(s->scheme)) { /* groups of 16 / 32 whatever group_size says */
        QD_CHECK(qd_fp4_check_shape(s->scheme, name, K));
        *G = K / (size_t)qd_scheme_fp4_group(s->scheme);
        return QD_OK;
    }
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
    return (qd_qcfg){.kind = s->method == QD_METHOD_AWQ ? QD_QZ_AWQ : qd_scheme_is_fp4(s->scheme) ? QD_QZ_FP4 : QD_QZ_MINMAX, .bits = s->bits, .sym = s->sym,
                     .mse = s->method != QD_METHOD_AWQ && s->mse, .mse_norm = 2.4f, .mse_grid = 100,
                     .mse_maxshrink = 0.8f, .scale_dtype = s->scale_dtype};
}

qd_status qd_check_finite(qd_backend_t be, qd_buf_t buf, size_t off, size_t n, const char *what, const char *name) {
    double bad;
    QD_CHECK(qd_be_reduce(be, &(struct qd_reduce_args){.kind = QD_RED_NONFINITE, .a = QD_REF(buf, off), .n = n,
                                                       .out = &bad}));
    if (bad > 0) return qd_fail(QD_ERR_NUMERIC, "%s: %.0f NaN/Inf values in %s", name, bad, what);
    return QD_OK;
}

/* The codes as bytes into l->codes: packed on the device when the backend can (N*K bytes cross to the
 * host instead of 4 N*K; the packed buffer is handed to *keep for the install), else downloaded as
 * int32 and narrowed here (*keep stays NULL). */
static qd_status fetch_codes(qd_backend_t be, const char *name, qd_buf_t codes, size_t n, uint8_t *dst,
                             qd_buf_t *keep) {
    *keep = NULL;
    if (qd_be_has(be, QD_OPT_U8_CODES)) {
        size_t words = (n + 3) / 4;
        qd_buf_t packed;
        QD_CHECK(qd_buf_alloc(be, words, &packed));
        uint8_t *tmp = n % 4 ? malloc(words * 4) : NULL; /* the download writes whole words */
        qd_status st = n % 4 && !tmp ? qd_fail(QD_ERR_NOMEM, "%s: out of memory fetching codes", name) : QD_OK;
        if (st == QD_OK)
            st = qd_be_u8_codes(be, &(struct qd_u8_codes_args){.dst = QD_REF(packed, 0), .src = QD_REF(codes, 0), .n = n});
        if (st == QD_OK)
            st = qd_be_download(be, &(struct qd_download_args){.src = QD_REF(packed, 0), .dst = tmp ? (void *)tmp : dst,
                                                                .n = words});
        if (st == QD_OK && tmp) memcpy(dst, tmp, n);
        free(tmp);
        if (st == QD_OK) *keep = packed;
        else qd_buf_free(packed);
        return st;
    }
    int32_t *c = malloc(n * sizeof *c);
    if (!c) return qd_fail(QD_ERR_NOMEM, "%s: out of memory fetching codes", name);
    qd_status st = qd_be_download(be, &(struct qd_download_args){.src = QD_REF(codes, 0), .dst = c, .n = n});
    if (st == QD_OK)
        for (size_t i = 0; i < n; i++) dst[i] = (uint8_t)c[i];
    free(c);
    return st;
}

qd_status qd_qresult_alloc(const qd_qspec *s, const char *name, size_t N, size_t K, size_t G, qd_qresult *out) {
    qd_qlinear *l = &out->q;
    snprintf(l->name, sizeof l->name, "%s", name);
    snprintf(l->method, sizeof l->method, "%s", qd_method_name(s->method));
    l->bits = s->bits;
    l->group_size = G == 1 ? -1 : s->group_size;
    l->sym = s->sym;
    l->scheme = s->scheme;
    if (s->scheme == QD_SCHEME_FP8_BLOCK) l->group_size = QD_FP8_BLOCK_SIZE; /* one group may still be a block */
    if (qd_scheme_is_fp4(s->scheme)) l->group_size = qd_scheme_fp4_group(s->scheme); /* K may be one group */
    l->global_scale = 0;
    return qd_qlinear_alloc(l, (int)N, (int)K, (int)G);
}

qd_status qd_qresult_fetch(qd_backend_t be, const qd_qspec *s, const char *name, qd_buf_t codes, qd_buf_t scales,
                           qd_buf_t zeros, const int32_t *g_idx, size_t N, size_t K, size_t G, qd_qresult *out) {
    qd_qlinear *l = &out->q;
    QD_CHECK(qd_qresult_alloc(s, name, N, K, G, out));
    qd_status st;
    out->dev_codes = NULL;
    QD_CHECK_GOTO(fetch_codes(be, name, codes, N * K, l->codes, &out->dev_codes), st, fail);
    QD_CHECK_GOTO(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(scales, 0), .dst = l->scales, .n = G * N}),
                  st, fail);
    QD_CHECK_GOTO(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(zeros, 0), .dst = l->zeros, .n = G * N}),
                  st, fail);
    memcpy(l->g_idx, g_idx, K * sizeof *g_idx);
    return QD_OK;
fail:
    qd_qresult_free(out);
    return st;
}
