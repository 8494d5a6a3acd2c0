/* SPDX-License-Identifier: MIT
 * h5stage-block-read.c - read a staged block back and check it: every dataset present with the
 * expected type class and shape, every attribute present, values in range. A file HDF5 cannot read
 * (truncated, garbage) or that breaks the layout is one line naming the file and dataset. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5stage-h5.h"
#include "h5stage-internal.h"
#include "qd-check.h"
#include "qd-fs.h"

#define QD_STAGE_MAX_STR 4096

void qd_staged_block_free(qd_staged_block *b) {
    if (!b) return;
    for (size_t i = 0; i < b->nmodules; i++) qd_qlinear_free(&b->modules[i].q);
    for (size_t i = 0; i < b->ntensors; i++) free(b->tensors[i].data);
    free(b->modules);
    free(b->tensors);
    free(b->sources);
    free(b);
}

static qd_status malformed(qd__h5s *s, const char *obj, const char *fmt_what) {
    return qd_fail(QD_ERR_FORMAT, "%s: %s: %s", s->path, obj, fmt_what);
}

static qd_status open_attr(qd__h5s *s, hid_t loc, const char *obj, const char *name, H5T_class_t cls, hid_t *a) {
    char what[600];
    snprintf(what, sizeof what, "%s attribute '%s'", obj, name);
    htri_t ex = H5Aexists(loc, name);
    QD_H5_CHECK(s, ex < 0 ? -1 : 0, what);
    if (!ex) return malformed(s, what, "missing");
    QD_H5_KEEP(s, H5Aopen(loc, name, H5P_DEFAULT), what, a);
    hid_t t, sp;
    QD_H5_KEEP(s, H5Aget_type(*a), what, &t);
    H5T_class_t got = H5Tget_class(t);
    QD_CHECK(qd__h5s_pop(s, t));
    if (got != cls) return malformed(s, what, cls == H5T_STRING ? "expected a string" : cls == H5T_FLOAT
                                                   ? "expected a float" : "expected an integer");
    QD_H5_KEEP(s, H5Aget_space(*a), what, &sp);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    QD_CHECK(qd__h5s_pop(s, sp));
    if (np != 1) return malformed(s, what, "expected a scalar");
    return QD_OK;
}

static qd_status read_attr(qd__h5s *s, hid_t loc, const char *obj, const char *name, H5T_class_t cls, hid_t mtype,
                           void *v) {
    hid_t a;
    QD_CHECK(open_attr(s, loc, obj, name, cls, &a));
    QD_H5_CHECK(s, H5Aread(a, mtype, v), name);
    return qd__h5s_pop(s, a);
}

static qd_status read_attr_str(qd__h5s *s, hid_t loc, const char *obj, const char *name, char *out, size_t cap) {
    hid_t a, ft, mt;
    QD_CHECK(open_attr(s, loc, obj, name, H5T_STRING, &a));
    QD_H5_KEEP(s, H5Aget_type(a), name, &ft);
    size_t sz = H5Tget_size(ft);
    htri_t vl = H5Tis_variable_str(ft);
    H5T_cset_t cset = H5Tget_cset(ft);
    QD_CHECK(qd__h5s_pop(s, ft));
    char what[600];
    snprintf(what, sizeof what, "%s attribute '%s'", obj, name);
    if (vl != 0 || sz == 0 || sz >= QD_STAGE_MAX_STR || cset < 0)
        return malformed(s, what, "expected a fixed-length string");
    char buf[QD_STAGE_MAX_STR + 1];
    QD_H5_KEEP(s, H5Tcopy(H5T_C_S1), name, &mt);
    QD_H5_CHECK(s, H5Tset_size(mt, sz + 1), name);
    QD_H5_CHECK(s, H5Tset_strpad(mt, H5T_STR_NULLTERM), name);
    QD_H5_CHECK(s, H5Tset_cset(mt, cset), name);
    QD_H5_CHECK(s, H5Aread(a, mt, buf), name);
    QD_CHECK(qd__h5s_pop(s, mt));
    QD_CHECK(qd__h5s_pop(s, a));
    buf[sz] = '\0';
    if (strlen(buf) >= cap) return malformed(s, what, "string too long");
    memcpy(out, buf, strlen(buf) + 1);
    return QD_OK;
}

/* Open dataset obj/name (class cls; ndim dims, or any number up to QD_STAGE_MAX_DIMS when ndim is 0);
 * its shape goes to dims, *nd_out and *numel_out, its handle (kept in s) to *ds. */
static qd_status open_dataset(qd__h5s *s, hid_t loc, const char *what, const char *name, H5T_class_t cls, int ndim,
                              int64_t *dims, int *nd_out, size_t *numel_out, hid_t *ds) {
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    QD_H5_CHECK(s, ex < 0 ? -1 : 0, what);
    if (!ex) return malformed(s, what, "dataset missing");
    hid_t t, sp;
    QD_H5_KEEP(s, H5Dopen2(loc, name, H5P_DEFAULT), what, ds);
    QD_H5_KEEP(s, H5Dget_type(*ds), what, &t);
    H5T_class_t got = H5Tget_class(t);
    QD_CHECK(qd__h5s_pop(s, t));
    if (got != cls) return malformed(s, what, cls == H5T_FLOAT ? "expected a float dataset" : "expected an integer dataset");
    QD_H5_KEEP(s, H5Dget_space(*ds), what, &sp);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t hd[QD_STAGE_MAX_DIMS];
    if (nd < 1 || nd > QD_STAGE_MAX_DIMS || (ndim > 0 && nd != ndim)) {
        char m[80];
        snprintf(m, sizeof m, "%d dimensions, expected %d", nd, ndim > 0 ? ndim : QD_STAGE_MAX_DIMS);
        return malformed(s, what, m);
    }
    QD_H5_CHECK(s, H5Sget_simple_extent_dims(sp, hd, NULL) < 0 ? -1 : 0, what);
    QD_CHECK(qd__h5s_pop(s, sp));
    size_t numel = 1;
    for (int d = 0; d < nd; d++) {
        if (hd[d] < 1 || hd[d] > (SIZE_MAX / 8) / numel) return malformed(s, what, "empty or oversized dimension");
        numel *= (size_t)hd[d];
        dims[d] = (int64_t)hd[d];
    }
    *nd_out = nd;
    *numel_out = numel;
    return QD_OK;
}

/* Read dataset obj/name (as open_dataset) into a new array of elem-byte elements (mtype). */
static qd_status read_dataset(qd__h5s *s, hid_t loc, const char *obj, const char *name, H5T_class_t cls, int ndim,
                              int64_t *dims, int *nd_out, hid_t mtype, size_t elem, void **data) {
    char what[600];
    snprintf(what, sizeof what, "%s%s%s", obj, *obj ? "/" : "", name);
    hid_t ds;
    size_t numel = 0;
    QD_CHECK(open_dataset(s, loc, what, name, cls, ndim, dims, nd_out, &numel, &ds));
    void *buf = malloc(numel * elem);
    if (!buf) return qd_fail(QD_ERR_NOMEM, "%s: %s: out of memory for %zu elements", s->path, what, numel);
    if (H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        return qd__h5s_ok(s, -1, what);
    }
    *data = buf;
    return qd__h5s_pop(s, ds);
}

/* The shape of dataset obj/name without reading it. */
static qd_status dataset_dims(qd__h5s *s, hid_t loc, const char *obj, const char *name, H5T_class_t cls, int ndim,
                              int64_t *dims) {
    char what[600];
    snprintf(what, sizeof what, "%s/%s", obj, name);
    hid_t ds;
    size_t numel = 0;
    int nd;
    QD_CHECK(open_dataset(s, loc, what, name, cls, ndim, dims, &nd, &numel, &ds));
    return qd__h5s_pop(s, ds);
}

static qd_status expect_dims(qd__h5s *s, const char *obj, const char *name, const int64_t *got, int64_t a, int64_t b,
                             int nd) {
    if (got[0] == a && (nd == 1 || got[1] == b)) return QD_OK;
    char what[600], m[160];
    snprintf(what, sizeof what, "%s/%s", obj, name);
    if (nd == 1) snprintf(m, sizeof m, "shape [%lld], expected [%lld]", (long long)got[0], (long long)a);
    else snprintf(m, sizeof m, "shape [%lld,%lld], expected [%lld,%lld]", (long long)got[0], (long long)got[1],
                  (long long)a, (long long)b);
    return malformed(s, what, m);
}

/* dims[0] as the int a qd_qlinear holds */
static qd_status int_dim(qd__h5s *s, const char *obj, const char *name, int64_t d, int *out) {
    if (d > INT_MAX) {
        char what[600];
        snprintf(what, sizeof what, "%s/%s", obj, name);
        return malformed(s, what, "dimension larger than 2^31-1");
    }
    *out = (int)d;
    return QD_OK;
}

static qd_status read_module(qd__h5s *s, hid_t modules, qd_staged_module *m, int with_codes) {
    qd_qlinear *q = &m->q;
    char obj[QD_STAGE_NAME_MAX + 16];
    snprintf(obj, sizeof obj, "/modules/%s", q->name);
    hid_t g;
    QD_H5_KEEP(s, H5Gopen2(modules, q->name, H5P_DEFAULT), obj, &g);
    int64_t d[QD_STAGE_MAX_DIMS];
    int nd;
    void *p;
    if (with_codes) {
        QD_CHECK(read_dataset(s, g, obj, "codes", H5T_INTEGER, 2, d, &nd, H5T_NATIVE_UINT8, 1, &p));
        q->codes = p;
    } else {
        QD_CHECK(dataset_dims(s, g, obj, "codes", H5T_INTEGER, 2, d));
    }
    QD_CHECK(int_dim(s, obj, "codes", d[0], &q->N));
    QD_CHECK(int_dim(s, obj, "codes", d[1], &q->K));
    QD_CHECK(read_dataset(s, g, obj, "scales", H5T_FLOAT, 2, d, &nd, H5T_NATIVE_FLOAT, 4, &p));
    q->scales = p;
    QD_CHECK(int_dim(s, obj, "scales", d[0], &q->G));
    QD_CHECK(expect_dims(s, obj, "scales", d, q->G, q->N, 2));
    QD_CHECK(read_dataset(s, g, obj, "zeros", H5T_INTEGER, 2, d, &nd, H5T_NATIVE_INT32, 4, &p));
    q->zeros = p;
    QD_CHECK(expect_dims(s, obj, "zeros", d, q->G, q->N, 2));
    QD_CHECK(read_dataset(s, g, obj, "g_idx", H5T_INTEGER, 1, d, &nd, H5T_NATIVE_INT32, 4, &p));
    q->g_idx = p;
    QD_CHECK(expect_dims(s, obj, "g_idx", d, q->K, 0, 1));
    int32_t v;
    QD_CHECK(read_attr(s, g, obj, "bits", H5T_INTEGER, H5T_NATIVE_INT32, &v));
    q->bits = v;
    QD_CHECK(read_attr(s, g, obj, "group_size", H5T_INTEGER, H5T_NATIVE_INT32, &v));
    q->group_size = v;
    QD_CHECK(read_attr(s, g, obj, "sym", H5T_INTEGER, H5T_NATIVE_INT32, &v));
    q->sym = v;
    htri_t has_scheme = H5Aexists(g, "scheme"); /* absent: wna16 (qd-scheme.h) */
    QD_H5_CHECK(s, has_scheme < 0 ? -1 : 0, "scheme");
    q->scheme = QD_SCHEME_WNA16;
    if (has_scheme) {
        QD_CHECK(read_attr(s, g, obj, "scheme", H5T_INTEGER, H5T_NATIVE_INT32, &v));
        if (v < QD_SCHEME_WNA16 || v > QD_SCHEME_LAST) return malformed(s, obj, "unknown scheme attribute");
        q->scheme = (qd_scheme)v;
    }
    if (qd_scheme_static_act(q->scheme)) {
        double is;
        QD_CHECK(read_attr(s, g, obj, "input_scale", H5T_FLOAT, H5T_NATIVE_DOUBLE, &is));
        if (!(is > 0) || !isfinite(is)) return malformed(s, obj, "input_scale attribute not a positive number");
        q->input_scale = (float)is;
    }
    q->global_scale = 0;
    if (qd_scheme_is_nvfp4(q->scheme)) {
        QD_CHECK(read_attr(s, g, obj, "global_scale", H5T_FLOAT, H5T_NATIVE_FLOAT, &q->global_scale));
        if (!(q->global_scale > 0) || !isfinite(q->global_scale))
            return malformed(s, obj, "nvfp4a16 global_scale attribute not a positive finite number");
    }
    QD_CHECK(read_attr(s, g, obj, "loss", H5T_FLOAT, H5T_NATIVE_DOUBLE, &m->s.loss));
    QD_CHECK(read_attr(s, g, obj, "damp", H5T_FLOAT, H5T_NATIVE_DOUBLE, &m->s.damp));
    QD_CHECK(read_attr(s, g, obj, "time_s", H5T_FLOAT, H5T_NATIVE_DOUBLE, &m->s.seconds));
    /* any length that fits: stagings written before the fallback kept its full length hold <= 64 bytes */
    QD_CHECK(read_attr_str(s, g, obj, "fallback", m->s.fallback, sizeof m->s.fallback));
    htri_t ex = H5Aexists(g, "expert"); /* a routed expert's Linear only */
    QD_H5_CHECK(s, ex < 0 ? -1 : 0, "expert");
    if (ex) {
        double tokens;
        QD_CHECK(read_attr(s, g, obj, "expert", H5T_INTEGER, H5T_NATIVE_INT32, &v));
        QD_CHECK(read_attr(s, g, obj, "expert_tokens", H5T_FLOAT, H5T_NATIVE_DOUBLE, &tokens));
        if (v < 0 || !(tokens >= 0 && tokens < 9e15)) return malformed(s, obj, "expert attributes out of range");
        m->s.expert = v + 1;
        m->s.expert_tokens = (size_t)tokens;
    }
    return qd__h5s_pop(s, g);
}

/* Open group name, count its children, report the index to list them in (creation order if kept). */
static qd_status open_list(qd__h5s *s, hid_t f, const char *name, hid_t *g, size_t *n, H5_index_t *idx) {
    char what[64];
    snprintf(what, sizeof what, "/%s", name);
    htri_t ex = H5Lexists(f, name, H5P_DEFAULT);
    QD_H5_CHECK(s, ex < 0 ? -1 : 0, what);
    if (!ex) return malformed(s, what, "group missing");
    QD_H5_KEEP(s, H5Gopen2(f, name, H5P_DEFAULT), what, g);
    H5G_info_t info;
    QD_H5_CHECK(s, H5Gget_info(*g, &info), what);
    hid_t gcpl;
    unsigned flags = 0;
    QD_H5_KEEP(s, H5Gget_create_plist(*g), what, &gcpl);
    QD_H5_CHECK(s, H5Pget_link_creation_order(gcpl, &flags), what);
    QD_CHECK(qd__h5s_pop(s, gcpl));
    *idx = (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    *n = (size_t)info.nlinks;
    return QD_OK;
}

static qd_status child_name(qd__h5s *s, hid_t g, const char *gname, H5_index_t idx, size_t i, char *out) {
    char what[64];
    snprintf(what, sizeof what, "/%s entry %zu", gname, i);
    ssize_t len = H5Lget_name_by_idx(g, ".", idx, H5_ITER_INC, (hsize_t)i, out, QD_STAGE_NAME_MAX, H5P_DEFAULT);
    QD_H5_CHECK(s, len < 0 ? -1 : 0, what);
    if (len == 0 || len >= QD_STAGE_NAME_MAX) return malformed(s, what, "name empty or too long");
    return QD_OK;
}

static qd_status read_h5(qd__h5s *s, const char *path, int with_codes, qd_staged_block *b) {
    hid_t fapl, f, g;
    QD_H5_KEEP(s, H5Pcreate(H5P_FILE_ACCESS), "file access properties", &fapl);
    QD_H5_CHECK(s, H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "file close degree");
    /* a checksum failure is final: no re-reads with sleeps in between (those are for SWMR readers) */
    QD_H5_CHECK(s, H5Pset_metadata_read_attempts(fapl, 1), "metadata read attempts");
#if H5_VERSION_GE(1, 10, 7)
    QD_H5_CHECK(s, H5Pset_file_locking(fapl, 0, 1), "turning off HDF5 file locking");
#endif
    QD_H5_KEEP(s, H5Fopen(path, H5F_ACC_RDONLY, fapl), "not a readable HDF5 file (truncated or corrupt?)", &f);
    char fmt[64];
    QD_CHECK(read_attr_str(s, f, "/", "format", fmt, sizeof fmt));
    if (strcmp(fmt, QD_STAGE_BLOCK_FORMAT) != 0)
        return qd_fail(QD_ERR_FORMAT, "%s: / attribute 'format' is '%s', expected '%s'", path, fmt, QD_STAGE_BLOCK_FORMAT);
    int32_t rank;
    QD_CHECK(read_attr(s, f, "/", "block", H5T_INTEGER, H5T_NATIVE_INT64, &b->block));
    QD_CHECK(read_attr(s, f, "/", "rank", H5T_INTEGER, H5T_NATIVE_INT32, &rank));
    b->rank = rank;
    QD_CHECK(read_attr(s, f, "/", "time_s", H5T_FLOAT, H5T_NATIVE_DOUBLE, &b->time_s));

    size_t n;
    H5_index_t idx;
    QD_CHECK(open_list(s, f, "modules", &g, &n, &idx));
    b->modules = calloc(n ? n : 1, sizeof *b->modules);
    if (!b->modules) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for %zu modules", path, n);
    for (size_t i = 0; i < n; i++) {
        qd_staged_module *m = &b->modules[b->nmodules++];
        QD_CHECK(child_name(s, g, "modules", idx, i, m->q.name));
        QD_CHECK(read_module(s, g, m, with_codes));
    }
    QD_CHECK(qd__h5s_pop(s, g));

    QD_CHECK(open_list(s, f, "tensors", &g, &n, &idx));
    b->tensors = calloc(n ? n : 1, sizeof *b->tensors);
    if (!b->tensors) return qd_fail(QD_ERR_NOMEM, "%s: out of memory for %zu tensors", path, n);
    for (size_t i = 0; i < n; i++) {
        qd_staged_tensor *t = &b->tensors[b->ntensors++];
        QD_CHECK(child_name(s, g, "tensors", idx, i, t->name));
        void *p;
        QD_CHECK(read_dataset(s, g, "/tensors", t->name, H5T_FLOAT, 0, t->shape, &t->ndim, H5T_NATIVE_FLOAT, 4, &p));
        t->data = p;
    }
    QD_CHECK(qd__h5s_pop(s, g));
    /* optional: blocks staged before qdist recorded their source tensors have none */
    htri_t ex = H5Lexists(f, "sources", H5P_DEFAULT);
    QD_H5_CHECK(s, ex < 0 ? -1 : 0, "/sources");
    if (!ex) return QD_OK;
    int64_t dims[QD_STAGE_MAX_DIMS];
    int nd;
    void *p;
    QD_CHECK(read_dataset(s, f, "", "sources", H5T_INTEGER, 1, dims, &nd, H5T_NATIVE_UINT8, 1, &p));
    char *text = realloc(p, (size_t)dims[0] + 1);
    if (!text) {
        free(p);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory for /sources", path);
    }
    text[dims[0]] = '\0';
    if (strlen(text) != (size_t)dims[0]) {
        free(text);
        return malformed(s, "/sources", "contains a NUL byte");
    }
    b->sources = text;
    return QD_OK;
}

qd_status qd_stage_read_block_file(const char *path, qd_staged_block **out) {
    return qd_stage_read_block_file_opt(path, 1, out);
}

qd_status qd_stage_read_block_file_opt(const char *path, int with_codes, qd_staged_block **out) {
    *out = NULL;
    if (!qd_path_exists(path)) return qd_fail(QD_ERR_IO, "%s: staged block not found", path);
    qd_staged_block *b;
    QD_ALLOC(b, 1);
    qd__h5_quiet();
    qd__h5s s = {.path = path, .fail = QD_ERR_FORMAT};
    qd_status st = read_h5(&s, path, with_codes, b);
    st = qd__h5s_close(&s, st);
    if (st == QD_OK) st = qd__stage_check_block(path, b, with_codes);
    if (st != QD_OK) {
        qd_staged_block_free(b);
        return st;
    }
    *out = b;
    return QD_OK;
}

qd_status qd_stage_read_block(const qd_stage *stage, int64_t block, qd_staged_block **out) {
    *out = NULL;
    char path[4200];
    QD_CHECK(qd__stage_block_path(stage->dir, block, "", path, sizeof path));
    QD_CHECK(qd_stage_read_block_file(path, out));
    if ((*out)->block != block) {
        qd_status st = qd_fail(QD_ERR_FORMAT, "%s: / attribute 'block' is %lld, expected %lld (file renamed?)", path,
                               (long long)(*out)->block, (long long)block);
        qd_staged_block_free(*out);
        *out = NULL;
        return st;
    }
    return QD_OK;
}
