/* SPDX-License-Identifier: MIT
 * stage-writer.c - the staging I/O thread (qd-stage-writer.h). */
#include "qd-stage-writer.h"

#include <pthread.h>
#include <stdlib.h>

#include "qd-check.h"
#include "qd-clock.h"

struct qd_stage_writer {
    qd_stage *stage;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    qd_staged_block *pending;
    void (*release)(qd_staged_block *b);
    int busy, stop;
    qd_status status; /* first failure */
    double busy_s;
};

static void *run(void *arg) {
    qd_stage_writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->pending && !w->stop) pthread_cond_wait(&w->cv, &w->lock);
        if (!w->pending) break; /* stop, nothing left */
        qd_staged_block *b = w->pending;
        void (*release)(qd_staged_block *) = w->release;
        w->pending = NULL;
        w->busy = 1;
        pthread_mutex_unlock(&w->lock);
        double t0 = qd_clock_s();
        qd_status st = qd_stage_write_block(w->stage, b);
        double dt = qd_clock_s() - t0;
        if (release) release(b);
        pthread_mutex_lock(&w->lock);
        w->busy_s += dt;
        if (st != QD_OK && w->status == QD_OK) w->status = st;
        w->busy = 0;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

qd_status qd_stage_writer_start(qd_stage *stage, qd_stage_writer **out) {
    qd_stage_writer *w;
    QD_ALLOC(w, 1);
    w->stage = stage;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cv);
        free(w);
        return qd_fail(QD_ERR_INTERNAL, "staging: cannot start the writer thread");
    }
    *out = w;
    return QD_OK;
}

/* with the lock held: until the slot is free and the thread idle */
static void wait_idle(qd_stage_writer *w) {
    while (w->pending || w->busy) pthread_cond_wait(&w->cv, &w->lock);
}

qd_status qd_stage_writer_submit(qd_stage_writer *w, qd_staged_block *b, void (*release)(qd_staged_block *b)) {
    pthread_mutex_lock(&w->lock);
    wait_idle(w);
    qd_status st = w->status;
    if (st == QD_OK) {
        w->pending = b;
        w->release = release;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->lock);
    if (st != QD_OK && release) release(b); /* an earlier block failed: the run is ending */
    return st;
}

qd_status qd_stage_writer_flush(qd_stage_writer *w) {
    pthread_mutex_lock(&w->lock);
    wait_idle(w);
    qd_status st = w->status;
    pthread_mutex_unlock(&w->lock);
    return st;
}

double qd_stage_writer_busy_s(qd_stage_writer *w) {
    pthread_mutex_lock(&w->lock);
    double s = w->busy_s;
    pthread_mutex_unlock(&w->lock);
    return s;
}

void qd_stage_writer_stop(qd_stage_writer *w) {
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    wait_idle(w);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cv);
    free(w);
}
