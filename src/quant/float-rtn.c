/* SPDX-License-Identifier: MIT
 * float-rtn.c - the float schemes (fp8: E4M3, fp4: E2M1) by round-to-nearest (qd-quant.h): the
 * scales of fp8.c / fp4.c from the weight, then every value encoded with its group's scale. On the
 * host: each codec is a few integer operations or comparisons per value (qd-fp8.h, qd-fp4.h), the
 * same bits on every backend. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd-check.h"
#include "qd-fp4.h"
#include "qd-fp8.h"
#include "qd-log.h"
#include "qd-quant.h"

size_t qd_float_group(const qd_qspec *s, size_t K) {
    return s->scheme == QD_SCHEME_FP8_BLOCK ? QD_FP8_BLOCK_SIZE
         : qd_scheme_is_fp4(s->scheme)     ? (size_t)qd_scheme_fp4_group(s->scheme)
                                           : K;
}

float qd_float_scales(const float *W, size_t N, size_t K, const qd_qspec *s, float *scales) {
    if (qd_scheme_is_fp4(s->scheme)) return qd_fp4_scales(W, N, K, s->scheme, s->fp4_global, scales);
    qd_fp8_scales(W, N, K, s, scales);
    return 0;
}

/* one value into the scheme's grid: its code and the code's value times scale */
static inline float encode(int fp8, float w, float scale, uint8_t *code) {
    *code = fp8 ? qd_f32_to_e4m3(w / scale) : qd_f32_to_e2m1(w / scale);
    return (fp8 ? qd_e4m3_to_f32(*code) : qd_e2m1_to_f32(*code)) * scale;
}

qd_status qd_float_rtn_layer(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                             qd_qresult *out) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!qd_scheme_is_float(s->scheme))
        return qd_fail(QD_ERR_INTERNAL, "%s: scheme %s is not an fp8 or fp4 scheme", name, qd_scheme_name(s->scheme));
    size_t G;
    QD_CHECK(qd_qspec_groups(s, name, K, &G));
    QD_CHECK(qd_check_finite(be, W, 0, N * K, "the weight", name));
    float *w = malloc(N * K * sizeof *w);
    if (!w) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for the %s weight (%zu x %zu)", name,
                           qd_scheme_name(s->scheme), N, K);
    qd_status st = qd_be_download(be, &(struct qd_download_args){.src = QD_REF(W, 0), .dst = w, .n = N * K});
    if (st == QD_OK) st = qd_qresult_alloc(s, name, N, K, G, out);
    if (st != QD_OK) {
        free(w);
        return st;
    }
    qd_qlinear *q = &out->q;
    int fp8 = qd_scheme_is_fp8(s->scheme);
    size_t gs = qd_float_group(s, K), rows = 1, cols = K;
    q->global_scale = qd_float_scales(w, N, K, s, q->scales);
    memset(q->zeros, 0, G * N * sizeof *q->zeros);
    if (fp8) qd_fp8_tile(s->scheme, N, K, &rows, &cols);
    /* tile by tile (the scale's own tile for fp8, a row for fp4): the loss sums in that order */
    double sq = 0;
    for (size_t n0 = 0; n0 < N; n0 += rows)
        for (size_t k0 = 0; k0 < K; k0 += cols)
            for (size_t n = n0; n < n0 + rows && n < N; n++)
                for (size_t k = k0; k < k0 + cols && k < K; k++) {
                    float x = w[n * K + k];
                    float d = encode(fp8, x, q->scales[(k / gs) * N + n], &q->codes[n * K + k]);
                    sq += ((double)x - d) * ((double)x - d);
                    w[n * K + k] = d;
                }
    for (size_t k = 0; k < K; k++) q->g_idx[k] = G == 1 ? 0 : (int32_t)(k / gs);
    st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(W, 0), .src = w, .src_dtype = QD_DT_F32, .n = N * K});
    free(w);
    if (st != QD_OK) {
        qd_qlinear_free(q);
        return st;
    }
    out->s.loss = sq / 2;
    out->s.damp = -1;
    out->s.fallback[0] = 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->s.seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return QD_OK;
}
