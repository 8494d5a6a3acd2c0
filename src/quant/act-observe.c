/* SPDX-License-Identifier: MIT
 * act-observe.c - absolute maxima of captured activations (qd-act-observe.h). */
#include "qd-act-observe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"

#define OBS_ROWS_PER_DOWNLOAD 1024 /* bounds the host scratch: 1024 rows of the widest input */

qd_status qd_act_obs_init(qd_act_obs *o, size_t cols) {
    memset(o, 0, sizeof *o);
    o->cols = cols;
    if (cols) {
        o->chan_amax = calloc(cols, sizeof *o->chan_amax);
        if (!o->chan_amax) return qd_fail(QD_ERR_NOMEM, "activation observer: out of memory for %zu channels", cols);
    }
    return QD_OK;
}

void qd_act_obs_free(qd_act_obs *o) {
    if (!o) return;
    free(o->chan_amax), free(o->host);
    memset(o, 0, sizeof *o);
}

qd_status qd_act_obs_add(qd_backend_t be, qd_act_obs *o, qd_ref x, size_t rows, size_t cols, size_t ld) {
    if (!rows || !cols) return QD_OK;
    o->rows_seen += rows;
    if (!o->cols) { /* per tensor: one reduction on the device */
        double m = 0;
        if (ld != cols) return qd_fail(QD_ERR_INTERNAL, "activation observer: a per-tensor slice with row stride %zu != %zu", ld, cols);
        QD_CHECK(qd_be_reduce(be, &(struct qd_reduce_args){.kind = QD_RED_ABSMAX, .a = x, .n = rows * cols, .out = &m}));
        if (m > o->amax) o->amax = m;
        return QD_OK;
    }
    if (cols != o->cols)
        return qd_fail(QD_ERR_INTERNAL, "activation observer: %zu columns fed to an observer of %zu", cols, o->cols);
    size_t step = rows < OBS_ROWS_PER_DOWNLOAD ? rows : OBS_ROWS_PER_DOWNLOAD;
    if (o->host_cap < step * ld) {
        free(o->host);
        o->host = malloc(step * ld * sizeof *o->host);
        o->host_cap = o->host ? step * ld : 0;
        if (!o->host) return qd_fail(QD_ERR_NOMEM, "activation observer: out of memory for %zu x %zu", step, ld);
    }
    for (size_t r0 = 0; r0 < rows; r0 += step) {
        size_t n = rows - r0 < step ? rows - r0 : step;
        QD_CHECK(qd_be_download(be, &(struct qd_download_args){.src = {x.buf, x.off + r0 * ld}, .dst = o->host,
                                                               .n = (n - 1) * ld + cols}));
        for (size_t r = 0; r < n; r++) {
            const float *row = o->host + r * ld;
            for (size_t j = 0; j < cols; j++) {
                double a = fabs((double)row[j]);
                if (a > o->chan_amax[j]) o->chan_amax[j] = a;
                if (a > o->amax) o->amax = a;
            }
        }
    }
    return QD_OK;
}

qd_status qd_act_amax_reduce(double *amax, size_t n, const qd_collective *coll) {
    if (!coll || coll->size <= 1 || !n) return QD_OK;
    size_t P = (size_t)coll->size;
    double *all = malloc(P * n * sizeof *all);
    size_t *counts = malloc(P * sizeof *counts);
    qd_status st = all && counts ? QD_OK : qd_fail(QD_ERR_NOMEM, "activation observer: out of memory");
    for (size_t r = 0; st == QD_OK && r < P; r++) counts[r] = n * sizeof(double);
    if (st == QD_OK) st = coll->allgatherv(coll, amax, counts, all);
    for (size_t r = 0; st == QD_OK && r < P; r++)
        for (size_t i = 0; i < n; i++)
            if (all[r * n + i] > amax[i]) amax[i] = all[r * n + i];
    free(all), free(counts);
    return st;
}

qd_status qd_act_obs_reduce(qd_act_obs *o, const qd_collective *coll) {
    if (!coll || coll->size <= 1) return QD_OK;
    size_t n = o->cols + 2, P = (size_t)coll->size; /* the channel maxima, the tensor maximum, the rows */
    double *mine = malloc(n * sizeof *mine), *all = malloc(P * n * sizeof *all);
    size_t *counts = malloc(P * sizeof *counts);
    qd_status st = mine && all && counts ? QD_OK : qd_fail(QD_ERR_NOMEM, "activation observer: out of memory");
    if (st == QD_OK) {
        for (size_t j = 0; j < o->cols; j++) mine[j] = o->chan_amax[j];
        mine[o->cols] = o->amax, mine[o->cols + 1] = (double)o->rows_seen;
        for (size_t r = 0; r < P; r++) counts[r] = n * sizeof(double);
        st = coll->allgatherv(coll, mine, counts, all);
    }
    if (st == QD_OK) {
        o->rows_seen = 0;
        for (size_t r = 0; r < P; r++) {
            const double *v = all + r * n;
            for (size_t j = 0; j < o->cols; j++)
                if (v[j] > o->chan_amax[j]) o->chan_amax[j] = v[j];
            if (v[o->cols] > o->amax) o->amax = v[o->cols];
            o->rows_seen += (size_t)v[o->cols + 1];
        }
    }
    free(mine), free(all), free(counts);
    return st;
}
