/* SPDX-License-Identifier: MIT
 * st-planned.c - safetensors shards laid out up front and written at their offsets from several
 * threads (qd-st-planned.h). */
#include "qd-st-planned.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-log.h"
#include "st-header.h"

struct qd_stpl {
    char *dir;
    char *prefix;
    uint64_t max_bytes;
    qd_st_entries list;
    uint64_t *base;               /* after the layout: file offset of each tensor's first byte */
    atomic_uint_least64_t *done;  /* bytes written so far, per tensor */
    int nshards;                  /* 0 before the layout */
    int *fds;
    char (*names)[128];
};

static qd_status pwrite_all(int fd, const void *buf, size_t len, uint64_t at, const char *path) {
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t r = pwrite(fd, p, len, (off_t)at);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return qd_fail(errno == ENOSPC ? QD_ERR_NOSPACE : QD_ERR_IO, "%s: write failed at byte %llu: %s", path,
                           (unsigned long long)at, strerror(errno));
        p += r;
        at += (uint64_t)r;
        len -= (size_t)r;
    }
    return QD_OK;
}

qd_status qd_stpl_open(const char *dir, const char *prefix, uint64_t max_shard_bytes, qd_stpl **out) {
    *out = NULL;
    QD_CHECK(qd_st_open_check(dir, prefix, max_shard_bytes));
    qd_stpl *w;
    QD_ALLOC(w, 1);
    w->dir = strdup(dir);
    w->prefix = strdup(prefix);
    w->max_bytes = max_shard_bytes;
    if (!w->dir || !w->prefix) {
        qd_stpl_abort(w);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory", dir);
    }
    *out = w;
    return QD_OK;
}

qd_status qd_stpl_declare(qd_stpl *w, const char *name, qd_dtype dtype, int ndim, const int64_t *shape,
                          uint64_t nbytes, size_t *index) {
    if (w->nshards) return qd_fail(QD_ERR_INTERNAL, "safetensors writer: tensor '%s' declared after the layout", name);
    *index = w->list.n;
    return qd_st_entries_add(&w->list, name, dtype, ndim, shape, nbytes); /* relative offsets: the layout's */
}

/* the cut of qd_stw_add: a tensor opens a new shard when the open one is not empty and would outgrow
 * the limit; an empty checkpoint is still one (empty) shard */
static void cut_shards(qd_stpl *w) {
    size_t first = 0;
    uint64_t bytes = 0;
    int shard = 0;
    for (size_t i = 0; i < w->list.n; i++) {
        uint64_t nb = w->list.e[i].end;
        if (i > first && bytes + nb > w->max_bytes) {
            shard++;
            first = i;
            bytes = 0;
        }
        w->list.e[i].begin = bytes;
        w->list.e[i].end = bytes + nb;
        w->list.e[i].shard = shard;
        bytes += nb;
    }
    w->nshards = shard + 1;
}

static qd_status write_header(qd_stpl *w, int s, size_t first, size_t last) {
    char path[4096];
    QD_CHECK(qd_path_join(path, sizeof path, w->dir, w->names[s]));
    w->fds[s] = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fds[s] < 0) return qd_fail(QD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    char *hdr;
    size_t hlen;
    QD_CHECK(qd_st_header_build(w->list.e + first, last - first, w->dir, &hdr, &hlen));
    unsigned char *buf = malloc(8 + hlen);
    if (!buf) {
        free(hdr);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory writing a shard header", path);
    }
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, hdr, hlen);
    free(hdr);
    qd_status st = pwrite_all(w->fds[s], buf, 8 + hlen, 0, path);
    free(buf);
    for (size_t i = first; i < last; i++) w->base[i] = 8 + hlen + w->list.e[i].begin;
    return st;
}

qd_status qd_stpl_layout(qd_stpl *w) {
    if (w->nshards) return qd_fail(QD_ERR_INTERNAL, "safetensors writer: layout fixed twice");
    cut_shards(w);
    w->base = calloc(w->list.n + 1, sizeof *w->base);
    w->done = calloc(w->list.n + 1, sizeof *w->done);
    w->fds = malloc((size_t)w->nshards * sizeof *w->fds);
    w->names = calloc((size_t)w->nshards, sizeof *w->names);
    if (w->fds) /* before the check: qd_stpl_abort closes every fd it finds >= 0 */
        for (int s = 0; s < w->nshards; s++) w->fds[s] = -1;
    if (!w->base || !w->done || !w->fds || !w->names)
        return qd_fail(QD_ERR_NOMEM, "safetensors writer: out of memory laying out %d shards", w->nshards);
    for (int s = 0; s < w->nshards; s++) {
        w->fds[s] = -1;
        qd_st_shard_name(w->prefix, s, w->nshards, w->names[s]);
    }
    for (size_t i = 0; i < w->list.n; i++) atomic_init(&w->done[i], 0);
    size_t first = 0;
    for (int s = 0; s < w->nshards; s++) {
        size_t last = first;
        while (last < w->list.n && w->list.e[last].shard == s) last++;
        QD_CHECK(write_header(w, s, first, last));
        first = last;
    }
    return QD_OK;
}

int qd_stpl_nshards(const qd_stpl *w) { return w->nshards; }

qd_status qd_stpl_write(qd_stpl *w, size_t index, uint64_t offset, const void *data, size_t len) {
    if (!w->nshards || index >= w->list.n || offset > w->list.e[index].end - w->list.e[index].begin ||
        len > w->list.e[index].end - w->list.e[index].begin - offset)
        return qd_fail(QD_ERR_INTERNAL, "safetensors writer: write outside tensor %zu or before the layout", index);
    const qd_st_entry *e = &w->list.e[index];
    int fd = w->fds[e->shard];
    uint64_t at = w->base[index] + offset;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", w->dir, w->names[e->shard]);
    QD_CHECK(pwrite_all(fd, data, len, at, path));
    atomic_fetch_add(&w->done[index], (uint_least64_t)len);
#ifdef SYNC_FILE_RANGE_WRITE
    /* start the write-back now, so the one fsync at the end finds little left to do */
    if (len >= (1u << 20)) (void)sync_file_range(fd, (off_t)at, (off_t)len, SYNC_FILE_RANGE_WRITE);
#endif
    return QD_OK;
}

qd_status qd_stpl_finish(qd_stpl *w) {
    qd_status st = w->nshards ? QD_OK : qd_stpl_layout(w);
    for (size_t i = 0; st == QD_OK && i < w->list.n; i++) {
        uint64_t want = w->list.e[i].end - w->list.e[i].begin, got = atomic_load(&w->done[i]);
        if (got != want)
            st = qd_fail(QD_ERR_INTERNAL, "safetensors writer: tensor '%s': %llu of its %llu bytes were written",
                         w->list.e[i].name, (unsigned long long)got, (unsigned long long)want);
    }
    for (int s = 0; st == QD_OK && s < w->nshards; s++) {
        if (fsync(w->fds[s]) != 0)
            st = qd_fail(QD_ERR_IO, "%s/%s: fsync failed: %s", w->dir, w->names[s], strerror(errno));
        if (close(w->fds[s]) != 0 && st == QD_OK)
            st = qd_fail(QD_ERR_IO, "%s/%s: close failed: %s", w->dir, w->names[s], strerror(errno));
        w->fds[s] = -1;
    }
    if (st == QD_OK && w->nshards > 1) st = qd_st_index_write(w->dir, w->prefix, w->list.e, w->list.n, w->names);
    if (st == QD_OK) st = qd_fsync_dir(w->dir);
    qd_stpl_abort(w);
    return st;
}

void qd_stpl_abort(qd_stpl *w) {
    if (!w) return;
    for (int s = 0; w->fds && s < w->nshards; s++)
        if (w->fds[s] >= 0) close(w->fds[s]);
    qd_st_entries_free(&w->list);
    free(w->base);
    free(w->done);
    free(w->fds);
    free(w->names);
    free(w->dir);
    free(w->prefix);
    free(w);
}
