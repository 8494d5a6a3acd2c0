/* SPDX-License-Identifier: MIT
 * h5stage-block-write.c - stage one block durably: validate, write block-NNNNN.h5.tmp with HDF5,
 * close, fsync the file, rename it to block-NNNNN.h5, fsync the directory. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "h5stage-h5.h"
#include "h5stage-internal.h"
#include "qd-check.h"
#include "qd-fs.h"

/* file access: no HDF5 file locking (shared file systems often lack flock), close everything on close */
static qd_status make_fapl(qd__h5s *s, hid_t *fapl) {
    QD_H5_KEEP(s, H5Pcreate(H5P_FILE_ACCESS), "file access properties", fapl);
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
static qd_status ordered_group(qd__h5s *s, hid_t loc, const char *name, hid_t *out) {
    hid_t gcpl;
    QD_H5_KEEP(s, H5Pcreate(H5P_GROUP_CREATE), name, &gcpl);
    QD_H5_CHECK(s, H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), name);
    QD_H5_KEEP(s, H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT), name, out);
    return QD_OK;
}

static qd_status write_module(qd__h5s *s, hid_t modules, const qd_staged_module *m) {
    hid_t g;
    QD_H5_KEEP(s, H5Gcreate2(modules, m->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), m->name, &g);
    int64_t nk[2] = {m->N, m->K}, gn[2] = {m->G, m->N}, k[1] = {m->K};
    QD_CHECK(dataset(s, g, "codes", 2, nk, H5T_STD_U8LE, H5T_NATIVE_UINT8, m->codes));
    QD_CHECK(dataset(s, g, "scales", 2, gn, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, m->scales));
    QD_CHECK(dataset(s, g, "zeros", 2, gn, H5T_STD_I32LE, H5T_NATIVE_INT32, m->zeros));
    QD_CHECK(dataset(s, g, "g_idx", 1, k, H5T_STD_I32LE, H5T_NATIVE_INT32, m->g_idx));
    QD_CHECK(attr_i32(s, g, "bits", m->bits));
    QD_CHECK(attr_i32(s, g, "group_size", m->group_size));
    QD_CHECK(attr_i32(s, g, "sym", m->sym));
    QD_CHECK(attr_f64(s, g, "loss", m->loss));
    QD_CHECK(attr_f64(s, g, "damp", m->damp));
    QD_CHECK(attr_f64(s, g, "time_s", m->time_s));
    QD_CHECK(attr_str(s, g, "fallback", m->fallback));
    return qd__h5s_pop(s, g);
}

static qd_status write_h5(qd__h5s *s, const char *tmp, const qd_staged_block *b) {
    hid_t fapl, f, modules, tensors;
    QD_CHECK(make_fapl(s, &fapl));
    QD_H5_KEEP(s, H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), "creating the file", &f);
    QD_CHECK(attr_str(s, f, "format", QD_STAGE_BLOCK_FORMAT));
    QD_CHECK(attr_i64(s, f, "block", b->block));
    QD_CHECK(attr_i32(s, f, "rank", b->rank));
    QD_CHECK(attr_f64(s, f, "time_s", b->time_s));
    QD_CHECK(ordered_group(s, f, "modules", &modules));
    for (size_t i = 0; i < b->nmodules; i++) QD_CHECK(write_module(s, modules, &b->modules[i]));
    QD_CHECK(ordered_group(s, f, "tensors", &tensors));
    for (size_t i = 0; i < b->ntensors; i++) {
        const qd_staged_tensor *t = &b->tensors[i];
        QD_CHECK(dataset(s, tensors, t->name, t->ndim, t->shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->data));
    }
    QD_H5_CHECK(s, H5Fflush(f, H5F_SCOPE_GLOBAL), "flushing the file");
    return QD_OK;
}

static qd_status fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return qd_fail(QD_ERR_IO, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0) return qd_fail(e == ENOSPC ? QD_ERR_NOSPACE : QD_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
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
    qd_status st = write_h5(&s, tmp, b);
    st = qd__h5s_close(&s, st);
    if (st == QD_OK) st = fsync_path(tmp);
    if (st == QD_OK && rename(tmp, final) != 0)
        st = qd_fail(QD_ERR_IO, "%s: rename into place failed: %s", final, strerror(errno));
    if (st != QD_OK) {
        unlink(tmp); /* never counted as staged; removing it only saves space */
        return st;
    }
    return qd_fsync_dir(stage->dir);
}
