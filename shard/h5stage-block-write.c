/* SPDX-License-Identifier: MIT
 * h5stage-block-write.c - stage one block durably: validate, build the HDF5 file in memory, write
 * its image to block-NNNNN.h5.tmp, fsync it, rename it to block-NNNNN.h5, fsync the directory.
 *
 * HDF5 only ever writes to memory (the core driver without a backing store): a full disk or an I/O
 * error is then one plain write() failure named with errno, and no HDF5 object is left half-flushed
 * and unclosable (a failed H5Dclose/H5Fclose on ENOSPC leaves its id open, and the library's exit
 * handler then loops or crashes closing it). */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5stage-h5.h"
#include "h5stage-internal.h"
#include "qd-check.h"
#include "qd-fs.h"

/* The in-memory image grows in steps of this many bytes. */
#define QD_STAGE_IMAGE_STEP (16u << 20)

/* The in-memory file's buffer, taken over when HDF5 closes the file: only then is it final (HDF5
 * 1.10's H5Fget_file_image of an open file clears the superblock's status flags without updating its
 * checksum, so such an image cannot be read back). */
typedef struct {
    void *img;  /* the buffer at close (ours to free) */
    size_t cap; /* its allocated size */
} image_sink;

static void *img_malloc(size_t size, H5FD_file_image_op_t op, void *u) {
    (void)op;
    void *p = malloc(size ? size : 1);
    if (p) ((image_sink *)u)->cap = size;
    return p;
}
static void *img_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *u) {
    (void)op;
    void *p = realloc(ptr, size ? size : 1);
    if (p) ((image_sink *)u)->cap = size;
    return p;
}
static herr_t img_free(void *ptr, H5FD_file_image_op_t op, void *u) {
    image_sink *k = u;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && !k->img) k->img = ptr;
    else free(ptr);
    return 0;
}
static void *udata_copy(void *u) { return u; }
static herr_t udata_free(void *u) {
    (void)u;
    return 0;
}

/* file access: in memory (see above), no HDF5 file locking, close everything on close */
static qd_status make_fapl(qd__h5s *s, image_sink *sink, hid_t *fapl) {
    QD_H5_KEEP(s, H5Pcreate(H5P_FILE_ACCESS), "file access properties", fapl);
    H5FD_file_image_callbacks_t cb = {.image_malloc = img_malloc, .image_realloc = img_realloc,
                                      .image_free = img_free, .udata_copy = udata_copy,
                                      .udata_free = udata_free, .udata = sink};
    QD_H5_CHECK(s, H5Pset_file_image_callbacks(*fapl, &cb), "in-memory file callbacks");
    QD_H5_CHECK(s, H5Pset_fapl_core(*fapl, QD_STAGE_IMAGE_STEP, 0), "in-memory file driver");
    QD_H5_CHECK(s, H5Pset_fclose_degree(*fapl, H5F_CLOSE_STRONG), "file close degree");
    /* the 1.10 file format: every metadata object carries a checksum (a damaged header is refused
     * instead of parsed), and a dataset's chunk index lives inside its checksummed header */
    QD_H5_CHECK(s, H5Pset_libver_bounds(*fapl, H5F_LIBVER_V110, H5F_LIBVER_V110), "file format version");
#if H5_VERSION_GE(1, 10, 7)
    QD_H5_CHECK(s, H5Pset_file_locking(*fapl, 0, 1), "turning off HDF5 file locking");
#endif
    return QD_OK;
}

static qd_status attr_scalar(qd__h5s *s, hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    hid_t sp, a;
    QD_H5_KEEP(s, H5Screate(H5S_SCALAR), name, &sp);
    QD_H5_KEEP(s, H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT), name, &a);
    QD_H5_CHECK(s, H5Awrite(a, mtype, v), name);
    QD_CHECK(qd__h5s_pop(s, a));
    return qd__h5s_pop(s, sp);
}

static qd_status attr_i32(qd__h5s *s, hid_t loc, const char *name, int32_t v) {
    return attr_scalar(s, loc, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v);
}
static qd_status attr_i64(qd__h5s *s, hid_t loc, const char *name, int64_t v) {
    return attr_scalar(s, loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
static qd_status attr_f64(qd__h5s *s, hid_t loc, const char *name, double v) {
    return attr_scalar(s, loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

/* fixed-length, NUL-terminated UTF-8 string (h5py reads it as bytes, h5dump as a string) */
static qd_status attr_str(qd__h5s *s, hid_t loc, const char *name, const char *v) {
    hid_t t;
    QD_H5_KEEP(s, H5Tcopy(H5T_C_S1), name, &t);
    QD_H5_CHECK(s, H5Tset_size(t, strlen(v) + 1), name);
    QD_H5_CHECK(s, H5Tset_strpad(t, H5T_STR_NULLTERM), name);
    QD_H5_CHECK(s, H5Tset_cset(t, H5T_CSET_UTF8), name);
    QD_CHECK(attr_scalar(s, loc, name, t, t, v));
    return qd__h5s_pop(s, t);
}

/* Chunks of whole rows along the first dimension, at most QD_STAGE_CHUNK_BYTES each (HDF5 limits a
 * chunk to 4 GiB), each with a Fletcher-32 checksum that HDF5 (and h5py, h5dump) verify on read. */
#define QD_STAGE_CHUNK_BYTES (256u << 20)

static qd_status dataset(qd__h5s *s, hid_t loc, const char *name, int ndim, const int64_t *shape, hid_t ftype,
                         hid_t mtype, const void *data) {
    hsize_t dims[QD_STAGE_MAX_DIMS], chunk[QD_STAGE_MAX_DIMS];
    size_t row = H5Tget_size(ftype);
    for (int d = 0; d < ndim; d++) {
        dims[d] = chunk[d] = (hsize_t)shape[d];
        if (d > 0) row *= (size_t)shape[d];
    }
    hsize_t rows = row >= QD_STAGE_CHUNK_BYTES ? 1 : QD_STAGE_CHUNK_BYTES / row;
    if (chunk[0] > rows) chunk[0] = rows;
    hid_t sp, dcpl, ds;
    QD_H5_KEEP(s, H5Screate_simple(ndim, dims, NULL), name, &sp);
    QD_H5_KEEP(s, H5Pcreate(H5P_DATASET_CREATE), name, &dcpl);
    QD_H5_CHECK(s, H5Pset_chunk(dcpl, ndim, chunk), name);
    QD_H5_CHECK(s, H5Pset_fletcher32(dcpl), name);
    QD_H5_KEEP(s, H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT), name, &ds);
    QD_H5_CHECK(s, H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), name);
    QD_CHECK(qd__h5s_pop(s, ds));
    QD_CHECK(qd__h5s_pop(s, dcpl));
    return qd__h5s_pop(s, sp);
}

/* a group whose children keep the order they were written in */
static qd_status ordered_group(qd__h5s *s, hid_t loc, const char *name, hid_t *out, hid_t *gcpl) {
    QD_H5_KEEP(s, H5Pcreate(H5P_GROUP_CREATE), name, gcpl);
    QD_H5_CHECK(s, H5Pset_link_creation_order(*gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), name);
    QD_H5_KEEP(s, H5Gcreate2(loc, name, H5P_DEFAULT, *gcpl, H5P_DEFAULT), name, out);
    return QD_OK;
}

static qd_status write_module(qd__h5s *s, hid_t modules, const qd_staged_module *m) {
    const qd_qlinear *q = &m->q;
    hid_t g;
    QD_H5_KEEP(s, H5Gcreate2(modules, q->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), q->name, &g);
    int64_t nk[2] = {q->N, q->K}, gn[2] = {q->G, q->N}, k[1] = {q->K};
    QD_CHECK(dataset(s, g, "codes", 2, nk, H5T_STD_U8LE, H5T_NATIVE_UINT8, q->codes));
    QD_CHECK(dataset(s, g, "scales", 2, gn, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, q->scales));
    QD_CHECK(dataset(s, g, "zeros", 2, gn, H5T_STD_I32LE, H5T_NATIVE_INT32, q->zeros));
    QD_CHECK(dataset(s, g, "g_idx", 1, k, H5T_STD_I32LE, H5T_NATIVE_INT32, q->g_idx));
    QD_CHECK(attr_i32(s, g, "bits", q->bits));
    QD_CHECK(attr_i32(s, g, "group_size", q->group_size));
    QD_CHECK(attr_i32(s, g, "sym", q->sym));
    /* wna16 writes no attribute: its stagings stay byte-identical to those made before schemes existed */
    if (q->scheme != QD_SCHEME_WNA16) QD_CHECK(attr_i32(s, g, "scheme", (int32_t)q->scheme));
    if (qd_scheme_static_act(q->scheme)) QD_CHECK(attr_f64(s, g, "input_scale", q->input_scale));
    /* nvfp4a16's global scale: fp32, as its scales; a float attribute keeps it bit for bit */
    if (qd_scheme_is_nvfp4(q->scheme)) QD_CHECK(attr_scalar(s, g, "global_scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                                                             &q->global_scale));
    QD_CHECK(attr_f64(s, g, "loss", m->s.loss));
    QD_CHECK(attr_f64(s, g, "damp", m->s.damp));
    QD_CHECK(attr_f64(s, g, "time_s", m->s.seconds));
    QD_CHECK(attr_str(s, g, "fallback", m->s.fallback));
    if (m->s.expert) { /* a routed expert's Linear: which, and its routed tokens (for the report of a resume) */
        QD_CHECK(attr_i32(s, g, "expert", m->s.expert - 1));
        QD_CHECK(attr_f64(s, g, "expert_tokens", (double)m->s.expert_tokens));
    }
    return qd__h5s_pop(s, g);
}

/* The file's length: the end-of-file address of its superblock (version 2 or 3, 8-byte offsets). */
static qd_status image_length(const char *path, const image_sink *k, size_t *len) {
    const unsigned char *p = k->img;
    uint64_t eof = 0;
    if (p && k->cap >= 48 && (p[8] == 2 || p[8] == 3) && p[9] == 8)
        for (int i = 7; i >= 0; i--) eof = eof << 8 | p[28 + i];
    if (!eof || eof > k->cap)
        return qd_fail(QD_ERR_HDF5, "%s: the in-memory HDF5 file has no usable superblock", path);
    *len = (size_t)eof;
    return QD_OK;
}

static qd_status write_h5(qd__h5s *s, const char *tmp, const qd_staged_block *b, image_sink *sink) {
    hid_t fapl, f, modules, tensors, gcpl;
    QD_CHECK(make_fapl(s, sink, &fapl));
    QD_H5_KEEP(s, H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), "creating the file", &f);
    QD_CHECK(attr_str(s, f, "format", QD_STAGE_BLOCK_FORMAT));
    QD_CHECK(attr_i64(s, f, "block", b->block));
    QD_CHECK(attr_i32(s, f, "rank", b->rank));
    QD_CHECK(attr_f64(s, f, "time_s", b->time_s));
    QD_CHECK(ordered_group(s, f, "modules", &modules, &gcpl));
    for (size_t i = 0; i < b->nmodules; i++) QD_CHECK(write_module(s, modules, &b->modules[i]));
    QD_CHECK(qd__h5s_pop(s, modules));
    QD_CHECK(qd__h5s_pop(s, gcpl));
    QD_CHECK(ordered_group(s, f, "tensors", &tensors, &gcpl));
    for (size_t i = 0; i < b->ntensors; i++) {
        const qd_staged_tensor *t = &b->tensors[i];
        QD_CHECK(dataset(s, tensors, t->name, t->ndim, t->shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->data));
    }
    QD_CHECK(qd__h5s_pop(s, tensors));
    QD_CHECK(qd__h5s_pop(s, gcpl));
    if (b->sources && b->sources[0]) {
        int64_t n[1] = {(int64_t)strlen(b->sources)};
        QD_CHECK(dataset(s, f, "sources", 1, n, H5T_STD_U8LE, H5T_NATIVE_UINT8, b->sources));
    }
    return QD_OK;
}

/* img into path (created or truncated), fsynced; a full disk is QD_ERR_NOSPACE */
static qd_status write_file(const char *path, const void *img, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return qd_fail(QD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    const char *p = img;
    int e = 0;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            e = w < 0 ? errno : ENOSPC;
            break;
        }
        p += w, len -= (size_t)w;
    }
    if (!e && fsync(fd) != 0) e = errno;
    if (close(fd) != 0 && !e) e = errno;
    if (e) return qd_fail(e == ENOSPC || e == EDQUOT ? QD_ERR_NOSPACE : QD_ERR_IO, "%s: writing the staged block "
                          "failed: %s", path, strerror(e));
    return QD_OK;
}

qd_status qd_stage_write_block(qd_stage *stage, const qd_staged_block *b) {
    char tmp[4200], final[4200], where[4300];
    QD_CHECK(qd__stage_block_path(stage->dir, b->block, ".tmp", tmp, sizeof tmp));
    QD_CHECK(qd__stage_block_path(stage->dir, b->block, "", final, sizeof final));
    snprintf(where, sizeof where, "%s: staging block %lld", final, (long long)b->block);
    QD_CHECK(qd__stage_check_block(where, b, 1));

    qd__h5_quiet();
    qd__h5s s = {.path = tmp, .fail = QD_ERR_HDF5};
    image_sink sink = {0};
    size_t len = 0;
    qd_status st = write_h5(&s, tmp, b, &sink);
    st = qd__h5s_close(&s, st); /* closing the file hands its final image to sink */
    if (st == QD_OK) st = image_length(tmp, &sink, &len);
    if (st == QD_OK) st = write_file(tmp, sink.img, len);
    free(sink.img);
    if (st == QD_OK && rename(tmp, final) != 0)
        st = qd_fail(QD_ERR_IO, "%s: rename into place failed: %s", final, strerror(errno));
    if (st != QD_OK) {
        unlink(tmp); /* never counted as staged; removing it only saves space */
        return st;
    }
    return qd_fsync_dir(stage->dir);
}
