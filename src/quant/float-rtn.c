/* SPDX-License-Identifier: MIT
 * float-rtn.c - the float schemes (fp8: E4M3, fp4: E2M1) by round-to-nearest (qd-quant.h): the
 * scales of fp8.c / fp4.c from the weight, then every value encoded with its group's scale. On the
 * host, rows split over threads: each codec is a few integer operations or comparisons per value
 * (qd-fp8.h, qd-fp4.h), the same bits on every backend and for every thread count. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* Rows [r0, r1) of the weight encoded with their groups' scales: the codes and the squared error of
 * these rows. A 256-entry decode table replaces the per-value decode. */
typedef struct {
    const float *w, *scales, *lut;
    uint8_t *codes;
    size_t N, K, gs, r0, r1;
    int fp8;
    double sq;
} rtn_job;

static void *rtn_rows(void *arg) {
    rtn_job *j = arg;
    double sq = 0;
    for (size_t n = j->r0; n < j->r1; n++)
        for (size_t k = 0; k < j->K; k++) {
            float x = j->w[n * j->K + k], scale = j->scales[(k / j->gs) * j->N + n];
            uint8_t c = j->fp8 ? qd_f32_to_e4m3(x / scale) : qd_f32_to_e2m1(x / scale);
            float d = j->lut[c] * scale;
            j->codes[n * j->K + k] = c;
            sq += ((double)x - d) * ((double)x - d);
        }
    j->sq = sq;
    return NULL;
}

#define RTN_MAX_THREADS 16

/* threads for n values: one below 4 Mi, else the CPUs (at most RTN_MAX_THREADS); the codes do not
 * depend on the count, only the loss's summation order does */
static int rtn_threads(size_t n) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return n < ((size_t)4 << 20) ? 1 : cpus > RTN_MAX_THREADS ? RTN_MAX_THREADS : cpus > 0 ? (int)cpus : 1;
}

/* every value of w [N, K] encoded (rows split over threads); the loss sum (w - q)^2 */
static double rtn_encode(int fp8, const float *w, const float *scales, size_t gs, size_t N, size_t K, uint8_t *codes) {
    float lut[256];
    for (int c = 0; c < 256; c++) lut[c] = fp8 ? qd_e4m3_to_f32((uint8_t)c) : qd_e2m1_to_f32((uint8_t)c);
    int nt = rtn_threads(N * K);
    if ((size_t)nt > N) nt = (int)N;
    rtn_job jobs[RTN_MAX_THREADS];
    pthread_t th[RTN_MAX_THREADS];
    int started = 0; /* bit t: job t ran on a thread of its own (the others run here) */
    for (int t = 0; t < nt; t++)
        jobs[t] = (rtn_job){.w = w, .scales = scales, .lut = lut, .codes = codes, .N = N, .K = K, .gs = gs,
                            .r0 = N * t / nt, .r1 = N * (t + 1) / nt, .fp8 = fp8};
    for (int t = 1; t < nt; t++)
        if (pthread_create(&th[t], NULL, rtn_rows, &jobs[t]) == 0) started |= 1 << t;
    for (int t = 0; t < nt; t++)
        if (!(started & (1 << t))) rtn_rows(&jobs[t]);
    double sq = 0;
    for (int t = 0; t < nt; t++) {
        if (started & (1 << t)) pthread_join(th[t], NULL);
        sq += jobs[t].sq;
    }
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
