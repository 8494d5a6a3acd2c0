/* SPDX-License-Identifier: MIT
 * st-writer.c - stream tensors into safetensors shards of bounded size, then write the index.
 *
 * A header must precede the data but is only known once the shard is full, so each shard's data is
 * streamed into a scratch file and copied behind the header when the shard closes (copy_file_range,
 * which the kernel may turn into a reflink). Shards are written under temporary names and renamed to
 * model-0000i-of-0000n.safetensors only in qd_stw_finish, once n is known.
 */
#include "qd-st-writer.h"
#include "st-header.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-log.h"

struct qd_stw {
    char *dir;
    char *prefix;
    uint64_t max_bytes;
    qd_st_entries list;
    int nshards;          /* shards closed so far */
    size_t shard_first;   /* first entry of the open shard */
    uint64_t shard_bytes; /* data bytes in the open shard */
    int data_fd;          /* scratch file of the open shard, -1 when none */
    char data_path[4096];
};

static qd_status write_all(int fd, const void *buf, size_t len, const char *path) {
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0)
            return qd_fail(errno == ENOSPC ? QD_ERR_NOSPACE : QD_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    return QD_OK;
}

static qd_status tmp_shard_path(const qd_stw *w, int shard, char *out, size_t cap) {
    char name[256];
    snprintf(name, sizeof name, ".%s-shard-%05d.partial", w->prefix, shard + 1);
    return qd_path_join(out, cap, w->dir, name);
}

qd_status qd_stw_open(const char *dir, const char *prefix, uint64_t max_shard_bytes, qd_stw **out) {
    *out = NULL;
    QD_CHECK(qd_st_open_check(dir, prefix, max_shard_bytes));
    qd_stw *w;
    QD_ALLOC(w, 1);
    w->dir = strdup(dir);
    w->prefix = strdup(prefix);
    w->max_bytes = max_shard_bytes;
    w->data_fd = -1;
    if (!w->dir || !w->prefix) {
        qd_stw_abort(w);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory", dir);
    }
    *out = w;
    return QD_OK;
}

static qd_status copy_data(int in, int out, uint64_t len, const char *path) {
    off_t off_in = 0;
    while (len > 0) {
        ssize_t r = copy_file_range(in, &off_in, out, NULL, len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* not supported here (or EOF): fall back to read/write */
        len -= (uint64_t)r;
    }
    char buf[1 << 16];
    while (len > 0) {
        ssize_t r = pread(in, buf, len < sizeof buf ? (size_t)len : sizeof buf, off_in);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return qd_fail(QD_ERR_IO, "%s: reading the shard's scratch data failed", path);
        QD_CHECK(write_all(out, buf, (size_t)r, path));
        off_in += r;
        len -= (uint64_t)r;
    }
    return QD_OK;
}

/* Close the open shard, entries [shard_first, end): header + scratch data into its temporary shard file. */
static qd_status close_shard(qd_stw *w, size_t end) {
    char *hdr;
    size_t hlen;
    QD_CHECK(qd_st_header_build(w->list.e + w->shard_first, end - w->shard_first, w->dir, &hdr, &hlen));
    char path[4096];
    qd_status st = tmp_shard_path(w, w->nshards, path, sizeof path);
    int fd = st == QD_OK ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    if (st == QD_OK && fd < 0) st = qd_fail(QD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if (st == QD_OK) st = write_all(fd, len8, 8, path);
    if (st == QD_OK) st = write_all(fd, hdr, hlen, path);
    free(hdr);
    if (st == QD_OK && w->data_fd >= 0) st = copy_data(w->data_fd, fd, w->shard_bytes, path);
    if (st == QD_OK && fsync(fd) != 0) st = qd_fail(QD_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && st == QD_OK) st = qd_fail(QD_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (w->data_fd >= 0) {
        close(w->data_fd);
        unlink(w->data_path);
        w->data_fd = -1;
    }
    if (st != QD_OK) return st;
    w->nshards++;
    w->shard_first = end;
    w->shard_bytes = 0;
    return QD_OK;
}

qd_status qd_stw_add(qd_stw *w, const char *name, qd_dtype dtype, int ndim, const int64_t *shape, const void *data,
                     size_t nbytes) {
    size_t i = w->list.n;
    QD_CHECK(qd_st_entries_add(&w->list, name, dtype, ndim, shape, nbytes));
    if (i > w->shard_first && w->shard_bytes + nbytes > w->max_bytes) QD_CHECK(close_shard(w, i));
    if (w->data_fd < 0) {
        char name_buf[256];
        snprintf(name_buf, sizeof name_buf, ".%s-shard-%05d.data", w->prefix, w->nshards + 1);
        QD_CHECK(qd_path_join(w->data_path, sizeof w->data_path, w->dir, name_buf));
        w->data_fd = open(w->data_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (w->data_fd < 0) return qd_fail(QD_ERR_IO, "%s: cannot create: %s", w->data_path, strerror(errno));
    }
    QD_CHECK(write_all(w->data_fd, data, nbytes, w->data_path));
    qd_st_entry *e = &w->list.e[i];
    e->begin = w->shard_bytes;
    e->end = w->shard_bytes + nbytes;
    e->shard = w->nshards;
    w->shard_bytes += nbytes;
    return QD_OK;
}

qd_status qd_stw_finish(qd_stw *w) {
    qd_status st = QD_OK;
    /* an empty checkpoint is still one valid file */
    if (w->list.n > w->shard_first || w->nshards == 0) st = close_shard(w, w->list.n);
    char (*names)[128] = NULL;
    if (st == QD_OK) {
        names = calloc((size_t)w->nshards, sizeof *names);
        if (!names) st = qd_fail(QD_ERR_NOMEM, "safetensors writer: out of memory");
    }
    for (int i = 0; st == QD_OK && i < w->nshards; i++) {
        qd_st_shard_name(w->prefix, i, w->nshards, names[i]);
        char from[4096], to[4096];
        st = tmp_shard_path(w, i, from, sizeof from);
        if (st == QD_OK) st = qd_path_join(to, sizeof to, w->dir, names[i]);
        if (st == QD_OK && rename(from, to) != 0)
            st = qd_fail(QD_ERR_IO, "%s: rename into place failed: %s", to, strerror(errno));
    }
    if (st == QD_OK && w->nshards > 1) st = qd_st_index_write(w->dir, w->prefix, w->list.e, w->list.n, names);
    if (st == QD_OK) st = qd_fsync_dir(w->dir);
    free(names);
    if (st != QD_OK) {
        qd_stw_abort(w);
        return st;
    }
    qd_stw_abort(w); /* frees; nothing partial is left at this point */
    return QD_OK;
}

void qd_stw_abort(qd_stw *w) {
    if (!w) return;
    if (w->data_fd >= 0) {
        close(w->data_fd);
        unlink(w->data_path);
    }
    qd_st_entries_free(&w->list);
    free(w->dir);
    free(w->prefix);
    free(w);
}
