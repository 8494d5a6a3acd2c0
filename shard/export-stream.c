/* SPDX-License-Identifier: MIT
 * export-stream.c - the export written during the run (qd-export-stream.h).
 *
 * The list, the layout and the pieces of work are those of qd_export_run (export.c, export-write.c);
 * only their order in time changes. Each piece belongs to a block (its tensor's "model.layers.<b>.")
 * or to none (embedding, final norm, lm_head: ready at once). The threads take, in file order, the
 * first piece whose block is ready: held in memory (put), or, after the run, in the staging. A block
 * held in memory is released when its last piece is written.
 */
#include "qd-export-stream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export-internal.h"
#include "qd-check.h"
#include "qd-clock.h"
#include "qd-log.h"
#include "qd-qsource-stage.h"

#define MAX_HELD 2 /* blocks in memory at once: the one being written and the next */

enum { WAITING, LIVE, FILES };

struct qd_xstream {
    qd_export_opts o;
    qd_qsource src;
    qd_xplan p;
    qd_xlist list;
    uint64_t need;
    qd_outdir *od;
    qd_stpl *w;
    size_t *index;
    qd_xunit *units;
    size_t nunits, ntaken, cursor;
    int *ublock;   /* block of each unit, -1 for none */
    char *taken;
    int nblocks;
    int *state;    /* per block */
    size_t *left;  /* pieces of each block not yet written */
    qd_staged_block **held;
    void (**release)(qd_staged_block *);
    int inflight, streamed, fallback, stop;
    qd_status st;  /* the first failure */
    qd_xstats stats;
    pthread_t *th;
    int nth;
    pthread_mutex_t lock;
    pthread_cond_t cv;
};

static int block_of(const char *name) {
    int b = -1, used = 0;
    if (sscanf(name, "model.layers.%d.%n", &b, &used) < 1 || used == 0) return -1;
    return b;
}

static int ready(const qd_xstream *x, int b) { return b < 0 || b >= x->nblocks || x->state[b] != WAITING; }

/* with the lock held: a block whose last piece is written is given back */
static void settle(qd_xstream *x, int b) {
    if (b < 0 || b >= x->nblocks || x->left[b] || x->state[b] != LIVE || !x->held[b]) return;
    qd_qsource_stage_drop(&x->src, b);
    x->release[b](x->held[b]);
    x->held[b] = NULL;
    x->inflight--;
}

static void *worker(void *arg) {
    qd_xstream *x = arg;
    qd_xstats stats = {0};
    pthread_mutex_lock(&x->lock);
    for (;;) {
        if (x->stop || x->fallback || x->st != QD_OK || x->ntaken == x->nunits) break;
        size_t i = x->cursor;
        while (i < x->nunits && (x->taken[i] || !ready(x, x->ublock[i]))) i++;
        if (i == x->nunits) {
            pthread_cond_wait(&x->cv, &x->lock);
            continue;
        }
        x->taken[i] = 1;
        x->ntaken++;
        while (x->cursor < x->nunits && x->taken[x->cursor]) x->cursor++;
        pthread_mutex_unlock(&x->lock);
        qd_status st = qd_export_unit_write(&x->p, &x->src, &x->list, x->w, x->index, &x->units[i], &stats);
        pthread_mutex_lock(&x->lock);
        if (st != QD_OK && x->st == QD_OK) x->st = st;
        int b = x->ublock[i];
        if (b >= 0 && b < x->nblocks) {
            x->left[b]--;
            settle(x, b);
        }
        pthread_cond_broadcast(&x->cv);
    }
    x->stats.scales_inexact += stats.scales_inexact;
    if (stats.scales_max_rel > x->stats.scales_max_rel) x->stats.scales_max_rel = stats.scales_max_rel;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->lock);
    return NULL;
}

/* the pieces of work, each with its block */
static qd_status make_units(qd_xstream *x) {
    QD_CHECK(qd_export_units(&x->src, &x->list, &x->units, &x->nunits));
    x->ublock = calloc(x->nunits + 1, sizeof *x->ublock);
    x->taken = calloc(x->nunits + 1, 1);
    x->state = calloc((size_t)x->nblocks + 1, sizeof *x->state);
    x->left = calloc((size_t)x->nblocks + 1, sizeof *x->left);
    x->held = calloc((size_t)x->nblocks + 1, sizeof *x->held);
    x->release = calloc((size_t)x->nblocks + 1, sizeof *x->release);
    if (!x->ublock || !x->taken || !x->state || !x->left || !x->held || !x->release)
        return qd_fail(QD_ERR_NOMEM, "export: out of memory planning %zu pieces of work", x->nunits);
    for (size_t i = 0; i < x->nunits; i++) {
        const qd_xtensor *t = &x->list.t[x->units[i].first];
        int b = block_of(t->layer >= 0 ? x->p.layers[t->layer].name : t->name);
        x->ublock[i] = b;
        if (b >= 0 && b < x->nblocks) x->left[b]++;
    }
    return QD_OK;
}

static void join_threads(qd_xstream *x, int stop) {
    if (stop) {
        pthread_mutex_lock(&x->lock);
        x->stop = 1;
        pthread_cond_broadcast(&x->cv);
        pthread_mutex_unlock(&x->lock);
    }
    for (int i = 0; i < x->nth; i++) pthread_join(x->th[i], NULL);
    x->nth = 0;
}

static void stop_threads(qd_xstream *x) { join_threads(x, 1); }

/* frees x; the output directory must be committed or aborted already (x->od NULL) */
static void free_stream(qd_xstream *x) {
    for (int b = 0; x->held && b < x->nblocks; b++)
        if (x->held[b]) x->release[b](x->held[b]);
    if (x->src.iface) qd_qsource_close(&x->src);
    qd_export_list_free(&x->list);
    free(x->p.layers);
    free(x->index);
    free(x->units);
    free(x->ublock);
    free(x->taken);
    free(x->state);
    free(x->left);
    free(x->held);
    free(x->release);
    free(x->th);
    pthread_mutex_destroy(&x->lock);
    pthread_cond_destroy(&x->cv);
    free(x);
}

void qd_xstream_abort(qd_xstream *x) {
    if (!x) return;
    stop_threads(x);
    qd_stpl_abort(x->w);
    if (x->od) qd_outdir_abort(x->od);
    free_stream(x);
}

static qd_status start_threads(qd_xstream *x) {
    int n = qd_export_threads(x->nunits);
    x->th = calloc((size_t)n, sizeof *x->th);
    if (!x->th) return qd_fail(QD_ERR_NOMEM, "export: out of memory starting %d threads", n);
    while (x->nth < n && pthread_create(&x->th[x->nth], NULL, worker, x) == 0) x->nth++;
    return x->nth ? QD_OK : qd_fail(QD_ERR_INTERNAL, "export: cannot start an export thread");
}

qd_status qd_xstream_begin(const qd_export_opts *o, const char *staging, const qd_checkpoint *ck, int nblocks,
                           const char *meta, const qd_qrun *run, const qd_qlinear *heads, const int *nonseq, size_t n,
                           qd_xstream **out) {
    *out = NULL;
    qd_xstream *x;
    QD_ALLOC(x, 1);
    x->o = *o;
    x->nblocks = nblocks;
    if (pthread_mutex_init(&x->lock, NULL) != 0 || pthread_cond_init(&x->cv, NULL) != 0) {
        free(x);
        return qd_fail(QD_ERR_NOMEM, "export: cannot create a mutex");
    }
    qd_status st = qd_qsource_open_planned(staging, ck, nblocks, meta, run, heads, nonseq, n, &x->src);
    if (st == QD_OK) st = qd_export_prepare(o, &x->src, heads, nonseq, &x->p, &x->list, &x->need);
    if (st == QD_OK) st = qd_outdir_begin(o->out_dir, o->overwrite, &x->od);
    if (st == QD_OK)
        st = qd_export_layout(&x->list, qd_outdir_path(x->od),
                              o->max_shard_bytes ? o->max_shard_bytes : QD_DEFAULT_MAX_SHARD_BYTES, &x->w, &x->index);
    if (st == QD_OK) st = make_units(x);
    if (st == QD_OK) st = start_threads(x);
    if (st != QD_OK) {
        qd_xstream_abort(x);
        return st;
    }
    *out = x;
    return QD_OK;
}

void qd_xstream_block(qd_xstream *x, qd_staged_block *b, void (*release)(qd_staged_block *b)) {
    int match = qd_qsource_stage_matches(&x->src, b);
    pthread_mutex_lock(&x->lock);
    if (!match && !x->fallback && x->st == QD_OK) {
        x->fallback = 1;
        qd_info("export: block %lld was quantized differently from the plan the streamed export was laid out "
                "with: the checkpoint is exported from the staging after the run", (long long)b->block);
        pthread_cond_broadcast(&x->cv);
    }
    while (x->inflight >= MAX_HELD && x->st == QD_OK && !x->fallback) pthread_cond_wait(&x->cv, &x->lock);
    int bi = (int)b->block;
    int take = x->st == QD_OK && !x->fallback && b->block >= 0 && b->block < x->nblocks && x->state[bi] == WAITING;
    if (take) {
        qd_status st = qd_qsource_stage_put(&x->src, b);
        if (st != QD_OK) x->st = st;
        take = st == QD_OK;
    }
    if (take) {
        x->state[bi] = LIVE;
        x->held[bi] = b;
        x->release[bi] = release;
        x->inflight++;
        x->streamed++;
        settle(x, bi);
        pthread_cond_broadcast(&x->cv);
    }
    pthread_mutex_unlock(&x->lock);
    if (!take) release(b);
}

/* Every block not handed over, read from the staging (without codes) and compared with the plan,
 * then let the threads read them. Called with the staging's HDF5 free. */
static qd_status open_files(qd_xstream *x) {
    qd_qsource_stage_use_files(&x->src); /* the threads still take only the blocks marked FILES below */
    for (int b = 0; b < x->nblocks; b++) {
        pthread_mutex_lock(&x->lock);
        int waiting = x->state[b] == WAITING, go = x->st == QD_OK && !x->fallback;
        pthread_mutex_unlock(&x->lock);
        if (!go) return QD_OK;
        if (!waiting) continue;
        int match = 1;
        QD_CHECK(qd_qsource_stage_check_file(&x->src, b, &match));
        if (!match) {
            pthread_mutex_lock(&x->lock);
            x->fallback = 1;
            pthread_cond_broadcast(&x->cv);
            pthread_mutex_unlock(&x->lock);
            qd_info("export: staged block %d was quantized differently from the plan the streamed export was laid "
                    "out with: the checkpoint is exported from the staging instead", b);
            return QD_OK;
        }
    }
    pthread_mutex_lock(&x->lock);
    for (int b = 0; b < x->nblocks; b++)
        if (x->state[b] == WAITING) x->state[b] = FILES;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->lock);
    return QD_OK;
}

qd_status qd_xstream_finish(qd_xstream *x, int *fallback, int *streamed) {
    *fallback = 0;
    *streamed = x->streamed;
    double t0 = qd_clock_s(), t1 = t0, t2 = t0;
    qd_status st = open_files(x);
    /* the threads leave once every piece is taken, each finishing its own first; after a failure they
     * would wait for blocks that will not come: they stop */
    join_threads(x, st != QD_OK);
    t1 = t2 = qd_clock_s();
    if (st == QD_OK) st = x->st;
    if (st == QD_OK && !x->fallback && x->ntaken != x->nunits)
        st = qd_fail(QD_ERR_INTERNAL, "export: %zu of %zu pieces of work were left", x->nunits - x->ntaken, x->nunits);
    *streamed = x->streamed;
    if (st == QD_OK && x->fallback) {
        *fallback = 1;
        qd_stpl_abort(x->w);
        qd_outdir_abort(x->od);
    } else {
        if (st == QD_OK) st = qd_stpl_finish(x->w); /* frees the writer */
        else qd_stpl_abort(x->w);
        t2 = qd_clock_s();
        st = qd_export_conclude(&x->o, &x->src, &x->p, x->od, st, &x->stats, x->need);
        /* what the export tail of a run is made of, for its report line */
        double t3 = qd_clock_s();
        if (st == QD_OK)
            qd_info("export: finished in %.2f s: pieces still open %.2f s, shard syncs and index %.2f s, metadata and "
                    "commit %.2f s", t3 - t0, t1 - t0, t2 - t1, t3 - t2);
    }
    x->w = NULL;
    x->od = NULL;
    free_stream(x);
    return st;
}
