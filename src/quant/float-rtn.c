/* SPDX-License-Identifier: MIT
 * float-rtn.c - the float schemes (fp8: E4M3, fp4: E2M1) by round-to-nearest (qd-quant.h): the
 * scales of fp8.c / fp4.c from the weight, then every value encoded with its group's scale. On the
 * host, rows split over threads: each codec is a few integer operations or comparisons per value
 * (qd-fp8.h, qd-fp4.h), the same bits on every backend and for every thread count. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd-check.h"
#include "qd-fp4.h"
#include "qd-fp8.h"
#include "qd-log.h"
#include "qd-quant.h"
#include "qd-rows.h"

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

/* The weight's values encoded with their groups' scales, rows split over threads (qd-rows.h): the
 * codes, and each part's squared error. A 256-entry table replaces the per-value decode. */
typedef struct {
    const float *w, *scales;
    float lut[256];
    uint8_t *codes;
    size_t N, K, gs;
    int fp8;
    double sq[QD_ROWS_MAX_PARTS];
} rtn_job;

static void rtn_rows(void *arg, int part, size_t r0, size_t r1) {
    rtn_job *j = arg;
    double sq = 0;
    for (size_t n = r0; n < r1; n++)
        for (size_t k0 = 0, g = 0; k0 < j->K; k0 += j->gs, g++) { /* one group's scale at a time */
            float scale = j->scales[g * j->N + n];
            const float *x = j->w + n * j->K;
            uint8_t *codes = j->codes + n * j->K;
            size_t k1 = k0 + j->gs < j->K ? k0 + j->gs : j->K;
            for (size_t k = k0; k < k1; k++) {
                uint8_t c = j->fp8 ? qd_f32_to_e4m3(x[k] / scale) : qd_e2m1_encode(x[k] / scale);
                float d = j->lut[c] * scale;
                codes[k] = c;
                sq += ((double)x[k] - d) * ((double)x[k] - d);
            }
        }
    j->sq[part] = sq;
}

/* every value of w [N, K] encoded; the loss sum (w - q)^2 (the parts' sums in order) */
static double rtn_encode(int fp8, const float *w, const float *scales, size_t gs, size_t N, size_t K, uint8_t *codes) {
    rtn_job j = {.w = w, .scales = scales, .codes = codes, .N = N, .K = K, .gs = gs, .fp8 = fp8};
    for (int c = 0; c < 256; c++) j.lut[c] = fp8 ? qd_e4m3_to_f32((uint8_t)c) : qd_e2m1_to_f32((uint8_t)c);
    qd_rows_run(N, K, rtn_rows, &j);
    double sq = 0;
    for (int t = 0; t < qd_rows_parts(N, K); t++) sq += j.sq[t];
    return sq;
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
    size_t gs = qd_float_group(s, K);
    q->global_scale = qd_float_scales(w, N, K, s, q->scales);
    memset(q->zeros, 0, G * N * sizeof *q->zeros);
    double sq = rtn_encode(fp8, w, q->scales, gs, N, K, q->codes);
    for (size_t k = 0; k < K; k++) q->g_idx[k] = G == 1 ? 0 : (int32_t)(k / gs);
    free(w); /* the caller installs the result (qd__install): the fp32 copy need not go back up */
    out->s.loss = sq / 2;
    out->s.damp = -1;
    out->s.fallback[0] = 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->s.seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return QD_OK;
}
