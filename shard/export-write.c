/* SPDX-License-Identifier: MIT
 * export-write.c - the export's tensors written by a pool of threads (export-internal.h).
 *
 * The layout of every shard is fixed first (qd-st-planned.h), so each piece of work writes at its
 * own offsets and the order in which the workers finish does not matter: the bytes are those of a
 * one-thread run. A piece of work is one layer (loaded from the source, packed, written) or one chunk
 * of a source tensor (written straight from the source's mapping). Workers take the pieces in file
 * order, so the staged blocks in use at once stay few, and memory stays at about one layer a worker.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export-internal.h"
#include "qd-check.h"
#include "qd-log.h"
#include "qd-param.h"
#include "qd-st-planned.h"

#define CHUNK_BYTES (64ull << 20) /* a source tensor is copied in pieces of this size */
#define MAX_THREADS 8

typedef struct pool {
    const qd_xplan *p;
    const qd_qsource *src;
    const qd_xlist *l;
    qd_stpl *w;
    size_t *out; /* writer index of each list entry */
    qd_xunit *units;
    size_t nunits, next;
    qd_status st;
    qd_xstats stats;
    pthread_mutex_t lock;
} pool;

static qd_status run_layer(const qd_xplan *p, const qd_qsource *src, const qd_xlist *l, qd_stpl *w,
                           const size_t *index, const qd_xunit *u, qd_xstats *stats) {
    const qd_xtensor *t0 = &l->t[u->first];
    const qd_xlayer *x = &p->layers[t0->layer];
    qd_qlinear ql;
    QD_CHECK(src->iface->load_layer(src->ctx, (size_t)x->src_index, 1, &ql));
    /* a scale that overflows the stored dtype would make the checkpoint's weights inf/NaN: refused
     * here, before the output directory is committed */
    qd_status st = qd_qlinear_check_scales(&ql, p->scale_dtype, qd_export_format_name(p->fmt));
    if (st == QD_OK && p->run.scales_rounded)
        st = qd_qlinear_check_scales(&ql, p->run.scale_dtype, "the run's --scale-dtype");
    if (st == QD_OK && p->zeros_at_pack) st = qd_export_check_v1_zeros(p, x, &ql);
    if (st != QD_OK) {
        qd_qlinear_free(&ql);
        return st;
    }
    if (p->run.scales_rounded) qd_qlinear_round_scales(&ql, p->run.scale_dtype);
    for (size_t i = u->first; i < u->first + u->count && st == QD_OK; i++) {
        void *buf;
        st = qd_export_tensor_bytes(p, src, &ql, &l->t[i], stats, &buf);
        if (st == QD_OK) st = qd_stpl_write(w, index[i], 0, buf, (size_t)l->t[i].nbytes);
        free(buf);
    }
    qd_qlinear_free(&ql);
    return st;
}

static qd_status run_plain(const qd_qsource *src, const qd_xlist *l, qd_stpl *w, const size_t *index,
                           const qd_xunit *u) {
    const qd_xtensor *t = &l->t[u->first];
    const unsigned char *map = src->iface->plain_map(src->ctx, (size_t)t->plain);
    if (map && u->len) return qd_stpl_write(w, index[u->first], u->off, map + u->off, (size_t)u->len);
    unsigned char *buf = malloc(t->nbytes ? t->nbytes : 1);
    if (!buf) return qd_fail(QD_ERR_NOMEM, "export: out of memory for %s (%llu bytes)", t->name,
                             (unsigned long long)t->nbytes);
    qd_status st = src->iface->plain_read(src->ctx, (size_t)t->plain, buf);
    if (st == QD_OK) st = qd_stpl_write(w, index[u->first], 0, buf, (size_t)t->nbytes);
    free(buf);
    return st;
}

qd_status qd_export_unit_write(const qd_xplan *p, const qd_qsource *src, const qd_xlist *l, qd_stpl *w,
                               const size_t *index, const qd_xunit *u, qd_xstats *stats) {
    return l->t[u->first].kind == QD_XT_PLAIN ? run_plain(src, l, w, index, u) : run_layer(p, src, l, w, index, u, stats);
}

static void *worker(void *arg) {
    pool *c = arg;
    qd_xstats stats = {0};
    for (;;) {
        pthread_mutex_lock(&c->lock);
        size_t i = c->st == QD_OK && c->next < c->nunits ? c->next++ : c->nunits;
        pthread_mutex_unlock(&c->lock);
        if (i == c->nunits) break;
        qd_status st = qd_export_unit_write(c->p, c->src, c->l, c->w, c->out, &c->units[i], &stats);
        if (st != QD_OK) {
            pthread_mutex_lock(&c->lock);
            if (c->st == QD_OK) c->st = st;
            pthread_mutex_unlock(&c->lock);
        }
    }
    pthread_mutex_lock(&c->lock);
    c->stats.scales_inexact += stats.scales_inexact;
    if (stats.scales_max_rel > c->stats.scales_max_rel) c->stats.scales_max_rel = stats.scales_max_rel;
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* one unit per layer, and per CHUNK_BYTES of a mapped source tensor */
qd_status qd_export_units(const qd_qsource *src, const qd_xlist *l, qd_xunit **out, size_t *nout) {
    size_t cap = l->n + 1, n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->t[i].kind == QD_XT_PLAIN) cap += (size_t)(l->t[i].nbytes / CHUNK_BYTES);
    qd_xunit *units = calloc(cap, sizeof *units);
    if (!units) return qd_fail(QD_ERR_NOMEM, "export: out of memory planning %zu pieces of work", cap);
    for (size_t i = 0; i < l->n;) {
        const qd_xtensor *t = &l->t[i];
        if (t->kind != QD_XT_PLAIN) {
            size_t j = i + 1;
            while (j < l->n && l->t[j].kind != QD_XT_PLAIN && l->t[j].layer == t->layer) j++;
            units[n++] = (qd_xunit){i, j - i, 0, 0};
            i = j;
            continue;
        }
        if (!src->iface->plain_map(src->ctx, (size_t)t->plain) || t->nbytes == 0)
            units[n++] = (qd_xunit){i, 1, 0, 0};
        else
            for (uint64_t off = 0; off < t->nbytes; off += CHUNK_BYTES)
                units[n++] = (qd_xunit){i, 1, off, t->nbytes - off < CHUNK_BYTES ? t->nbytes - off : CHUNK_BYTES};
        i++;
    }
    *out = units;
    *nout = n;
    return QD_OK;
}

int qd_export_threads(size_t nunits) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = qd_param_str(QD_PARAM_EXPORT_THREADS);
    if (env && atoi(env) > 0) n = atoi(env);
    else if (n > MAX_THREADS) n = MAX_THREADS;
    if (n < 1) n = 1;
    if ((size_t)n > nunits) n = nunits ? (long)nunits : 1;
    return (int)n;
}

static qd_status run_pool(pool *c) {
    int n = qd_export_threads(c->nunits);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    if (!th) return qd_fail(QD_ERR_NOMEM, "export: out of memory starting %d threads", n);
    int started = 0;
    for (; started < n - 1; started++)
        if (pthread_create(&th[started], NULL, worker, c) != 0) break; /* fewer threads still work */
    worker(c); /* the calling thread is one of the workers */
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    free(th);
    return c->st;
}

qd_status qd_export_layout(const qd_xlist *l, const char *dir, uint64_t max_shard_bytes, qd_stpl **w, size_t **index) {
    *w = NULL;
    *index = calloc(l->n + 1, sizeof **index);
    if (!*index) return qd_fail(QD_ERR_NOMEM, "export: out of memory for %zu tensors", l->n);
    qd_status st = qd_stpl_open(dir, "model", max_shard_bytes, w);
    for (size_t i = 0; i < l->n && st == QD_OK; i++) {
        const qd_xtensor *t = &l->t[i];
        st = qd_stpl_declare(*w, t->name, t->dtype, t->ndim, t->shape, t->nbytes, &(*index)[i]);
    }
    if (st == QD_OK) st = qd_stpl_layout(*w);
    if (st != QD_OK) {
        if (*w) qd_stpl_abort(*w);
        *w = NULL;
        free(*index);
        *index = NULL;
    }
    return st;
}

qd_status qd_export_write(const qd_xplan *p, const qd_qsource *src, const qd_xlist *l, const char *dir,
                          uint64_t max_shard_bytes, qd_xstats *stats) {
    pool c = {.p = p, .src = src, .l = l};
    if (pthread_mutex_init(&c.lock, NULL) != 0) return qd_fail(QD_ERR_NOMEM, "export: cannot create a mutex");
    qd_status st = qd_export_layout(l, dir, max_shard_bytes, &c.w, &c.out);
    if (st == QD_OK) st = qd_export_units(src, l, &c.units, &c.nunits);
    if (st == QD_OK) st = run_pool(&c);
    if (st == QD_OK) st = qd_stpl_finish(c.w);
    else if (c.w) qd_stpl_abort(c.w);
    stats->scales_inexact += c.stats.scales_inexact;
    if (c.stats.scales_max_rel > stats->scales_max_rel) stats->scales_max_rel = c.stats.scales_max_rel;
    free(c.units);
    free(c.out);
    pthread_mutex_destroy(&c.lock);
    return st;
}
