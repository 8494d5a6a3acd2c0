/* SPDX-License-Identifier: MIT
 * qd-rows.c - host loops split by rows over threads (qd-rows.h). */
#include "qd-rows.h"

#include <pthread.h>
#include <unistd.h>

typedef struct {
    qd_rows_fn fn;
    void *ctx;
    int part;
    size_t r0, r1;
} rows_part;

static void *run_part(void *arg) {
    rows_part *p = arg;
    p->fn(p->ctx, p->part, p->r0, p->r1);
    return NULL;
}

int qd_rows_parts(size_t rows, size_t cols) {
    if (rows == 0 || rows * cols < QD_ROWS_MIN_VALUES) return 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n = cpus > QD_ROWS_MAX_PARTS ? QD_ROWS_MAX_PARTS : cpus > 0 ? (size_t)cpus : 1;
    return (int)(n < rows ? n : rows);
}

void qd_rows_run(size_t rows, size_t cols, qd_rows_fn fn, void *ctx) {
    int n = qd_rows_parts(rows, cols);
    rows_part parts[QD_ROWS_MAX_PARTS];
    pthread_t th[QD_ROWS_MAX_PARTS];
    int started[QD_ROWS_MAX_PARTS] = {0};
    for (int t = 0; t < n; t++)
        parts[t] = (rows_part){.fn = fn, .ctx = ctx, .part = t, .r0 = rows * (size_t)t / (size_t)n,
                               .r1 = rows * (size_t)(t + 1) / (size_t)n};
    for (int t = 1; t < n; t++) started[t] = pthread_create(&th[t], NULL, run_part, &parts[t]) == 0;
    for (int t = 0; t < n; t++)
        if (!started[t]) run_part(&parts[t]);
    for (int t = 1; t < n; t++)
        if (started[t]) pthread_join(th[t], NULL);
}
