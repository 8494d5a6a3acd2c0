/* SPDX-License-Identifier: MIT */
#include "qd-progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qd-check.h"
#include "qd-clock.h"

struct qd_progress {
    char dir[4096];
    qd_plan plan;
    double tokens_per_block;
    qd_progress_mode mode;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    unsigned char *done; /* per block: staged */
    int initial_done;
    int reported_done;
    double t0;
};

static int scan(struct qd_progress *p) {
    int n = 0;
    for (int b = 0; b < p->plan.nblocks; b++) {
        if (!p->done[b]) {
            char path[4200];
            snprintf(path, sizeof path, "%s/block-%05d.h5", p->dir, b);
            p->done[b] = access(path, F_OK) == 0;
        }
        n += p->done[b];
    }
    return n;
}

static void report(struct qd_progress *p, int done, int final) {
    double el = qd_clock_s() - p->t0;
    int fresh = done - p->initial_done;
    double tps = el > 0 ? fresh * p->tokens_per_block / el : 0;
    int left = p->plan.nblocks - done;
    /* ranks work in parallel: ETA from the slowest rank's remaining blocks at the observed rate */
    int worst_left = 0;
    for (int r = 0; r < p->plan.nranks; r++) {
        int l = 0;
        for (int b = p->plan.first[r]; b < p->plan.first[r] + p->plan.count[r]; b++) l += !p->done[b];
        if (l > worst_left) worst_left = l;
    }
    double per_block = fresh > 0 ? el * p->plan.nranks / fresh : 0;
    double eta = fresh > 0 ? worst_left * per_block / p->plan.nranks : -1;
    if (p->mode == QD_PROGRESS_JSON) {
        printf("{\"event\":\"progress\",\"blocks_done\":%d,\"blocks_total\":%d,\"elapsed_s\":%.1f,"
               "\"tokens_per_s\":%.1f,\"eta_s\":%.1f,\"per_rank\":[",
               done, p->plan.nblocks, el, tps, eta);
        for (int r = 0; r < p->plan.nranks; r++) {
            int d = 0;
            for (int b = p->plan.first[r]; b < p->plan.first[r] + p->plan.count[r]; b++) d += p->done[b];
            printf("%s{\"rank\":%d,\"done\":%d,\"total\":%d}", r ? "," : "", r, d, p->plan.count[r]);
        }
        printf("]}\n");
    } else if (p->mode == QD_PROGRESS_BAR) {
        int width = 30, fill = p->plan.nblocks ? done * width / p->plan.nblocks : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        printf("\r[%s] %d/%d blocks  %.0f tok/s  ", bar, done, p->plan.nblocks, tps);
        if (eta >= 0 && left > 0) printf("ETA %.0fs   ", eta);
        if (final) printf("\n");
    } else {
        printf("progress: %d/%d blocks, %.1fs elapsed, %.0f tok/s", done, p->plan.nblocks, el, tps);
        if (eta >= 0 && left > 0) printf(", ETA %.0fs", eta);
        printf(" [");
        for (int r = 0; r < p->plan.nranks; r++) {
            int d = 0;
            for (int b = p->plan.first[r]; b < p->plan.first[r] + p->plan.count[r]; b++) d += p->done[b];
            printf("%s%d:%d/%d", r ? " " : "", r, d, p->plan.count[r]);
        }
        printf("]\n");
    }
    fflush(stdout);
}

static void *loop(void *arg) {
    struct qd_progress *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 500 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        if (!p->stop) pthread_cond_timedwait(&p->wake, &p->lock, &until);
        int stop = p->stop;
        int done = scan(p);
        if (done != p->reported_done || stop) {
            if (done != p->reported_done || p->mode == QD_PROGRESS_BAR) report(p, done, stop);
            p->reported_done = done;
        }
        if (stop) break;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

qd_status qd_progress_start(const char *staging_dir, const qd_plan *plan, double tokens_per_block,
                            qd_progress_mode mode, qd_progress **out) {
    *out = NULL;
    if (mode == QD_PROGRESS_QUIET) return QD_OK;
    struct qd_progress *p;
    QD_ALLOC(p, 1);
    snprintf(p->dir, sizeof p->dir, "%s", staging_dir);
    p->plan = *plan;
    p->tokens_per_block = tokens_per_block;
    p->mode = mode == QD_PROGRESS_AUTO ? (isatty(STDOUT_FILENO) ? QD_PROGRESS_BAR : QD_PROGRESS_LINES) : mode;
    p->done = calloc((size_t)plan->nblocks + 1, 1);
    if (!p->done) {
        free(p);
        return qd_fail(QD_ERR_NOMEM, "progress: out of memory");
    }
    p->initial_done = p->reported_done = scan(p);
    p->t0 = qd_clock_s();
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (pthread_create(&p->thread, NULL, loop, p) != 0) {
        free(p->done);
        free(p);
        return qd_fail(QD_ERR_INTERNAL, "progress: cannot start the reporter thread");
    }
    *out = p;
    return QD_OK;
}

void qd_progress_stop(qd_progress *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p->done);
    free(p);
}
