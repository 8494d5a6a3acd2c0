/* SPDX-License-Identifier: MIT
 * ewise.c - data movement, elementwise ops and reductions of the CPU backend: plain loops. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-ops.h"
#include "qd-exact.h"
#include "qd-log.h"
#include "qd-rows.h"

typedef struct {
    const struct qd_upload_args *a;
    size_t esz; /* source bytes per element */
} upload_job;

static void upload_part(void *arg, int part, size_t i0, size_t i1) {
    (void)part;
    const upload_job *j = arg;
    const unsigned char *src = (const unsigned char *)j->a->src + i0 * j->esz;
    float *dst = qd_ref_f32(j->a->dst) + i0;
    /* F32 and the 32-bit integer types travel bit for bit; other floats are converted */
    if (j->esz == 4 && (j->a->src_dtype == QD_DT_F32 || !qd_dtype_is_float(j->a->src_dtype)))
        memcpy(dst, src, (i1 - i0) * 4);
    else
        qd_to_f32(j->a->src_dtype, src, dst, i1 - i0);
}

qd_status qd_cpu_upload(qd_backend_t be, const struct qd_upload_args *a) {
    (void)be;
    upload_job j = {a, qd_dtype_is_float(a->src_dtype) ? (size_t)qd_dtype_bits(a->src_dtype) / 8 : 4};
    qd_rows_run(a->n, 1, upload_part, &j); /* a block's weights: split over the host's cores */
    return QD_OK;
}

static void download_part(void *arg, int part, size_t i0, size_t i1) {
    (void)part;
    const struct qd_download_args *a = arg;
    memcpy((char *)a->dst + i0 * 4, qd_ref_f32(a->src) + i0, (i1 - i0) * 4);
}

qd_status qd_cpu_download(qd_backend_t be, const struct qd_download_args *a) {
    (void)be;
    struct qd_download_args copy = *a; /* qd_rows_run's context is not const */
    qd_rows_run(a->n, 1, download_part, &copy); /* a whole weight (the float schemes' RTN): over the cores */
    return QD_OK;
}

qd_status qd_cpu_copy(qd_backend_t be, const struct qd_copy_args *a) {
    (void)be;
    float *d = qd_ref_f32(a->dst);
    const float *s = qd_ref_f32(a->src);
    for (size_t r = 0; r < a->rows; r++) memmove(d + r * a->ldd, s + r * a->lds, a->cols * 4);
    return QD_OK;
}

qd_status qd_cpu_fill(qd_backend_t be, const struct qd_fill_args *a) {
    (void)be;
    float *d = qd_ref_f32(a->dst);
    if (a->value == 0.0f && !signbit(a->value))
        memset(d, 0, a->n * 4);
    else
        for (size_t i = 0; i < a->n; i++) d[i] = a->value;
    return QD_OK;
}

qd_status qd_cpu_diag_add(qd_backend_t be, const struct qd_diag_add_args *a) {
    (void)be;
    float *A = qd_ref_f32(a->A);
    const float *v = a->v ? qd_ref_f32(QD_REF(a->v, a->v_off)) : NULL;
    for (size_t i = 0; i < a->n; i++) A[i * a->n + i] += a->scalar + (v ? v[i] : 0.0f);
    return QD_OK;
}

qd_status qd_cpu_permute(qd_backend_t be, const struct qd_permute_args *a) {
    (void)be;
    uint32_t *d = (uint32_t *)qd_ref_f32(a->dst);
    const uint32_t *s = (const uint32_t *)qd_ref_f32(a->src);
    const int32_t *p = qd_ref_i32(a->perm);
    size_t R = a->rows, C = a->cols;
    for (size_t i = 0; i < (a->kind == QD_PERM_ROWS ? R : C); i++)
        if (p[i] < 0 || (size_t)p[i] >= (a->kind == QD_PERM_ROWS ? R : C))
            return qd_fail(QD_ERR_INTERNAL, "cpu backend: permute: index %d out of range", p[i]);
    switch (a->kind) {
    case QD_PERM_COLS:
        for (size_t r = 0; r < R; r++)
            for (size_t j = 0; j < C; j++) d[r * C + j] = s[r * C + (size_t)p[j]];
        break;
    case QD_PERM_ROWS:
        for (size_t i = 0; i < R; i++) memcpy(d + i * C, s + (size_t)p[i] * C, C * 4);
        break;
    case QD_PERM_SYM:
        for (size_t i = 0; i < R; i++)
            for (size_t j = 0; j < C; j++) d[i * C + j] = s[(size_t)p[i] * C + (size_t)p[j]];
        break;
    }
    return QD_OK;
}

qd_status qd_cpu_ewise(qd_backend_t be, const struct qd_ewise_args *a) {
    int exact = qd_cpu_exact(be);
    float *o = qd_ref_f32(a->out);
    const float *x = qd_ref_f32(a->x);
    const float *y = a->y.buf ? qd_ref_f32(a->y) : NULL;
    const float *v = a->v.buf ? qd_ref_f32(a->v) : NULL;
    for (size_t r = 0; r < a->rows; r++) {
        float *orow = o + r * a->ld;
        const float *xr = x + r * a->ld, *yr = y ? y + r * a->ld : NULL;
        switch (a->kind) {
        case QD_EW_ADD: for (size_t c = 0; c < a->cols; c++) orow[c] = xr[c] + yr[c]; break;
        case QD_EW_MUL: for (size_t c = 0; c < a->cols; c++) orow[c] = xr[c] * yr[c]; break;
        case QD_EW_SWIGLU:
            if (exact)
                for (size_t c = 0; c < a->cols; c++) orow[c] = qd_exact_swiglu(xr[c], yr[c]);
            else
                for (size_t c = 0; c < a->cols; c++) orow[c] = xr[c] / (1.0f + expf(-xr[c])) * yr[c];
            break;
        case QD_EW_ADD_ROWV: for (size_t c = 0; c < a->cols; c++) orow[c] = xr[c] + v[c]; break;
        case QD_EW_MUL_COLV: for (size_t c = 0; c < a->cols; c++) orow[c] = xr[c] * v[c]; break;
        case QD_EW_DIV_COLV: for (size_t c = 0; c < a->cols; c++) orow[c] = xr[c] / v[c]; break;
        case QD_EW_MUL_ROWV: for (size_t c = 0; c < a->cols; c++) orow[c] = xr[c] * v[r]; break;
        case QD_EW_DIV_ROWV: for (size_t c = 0; c < a->cols; c++) orow[c] = xr[c] / v[r]; break;
        case QD_EW_SCALE: for (size_t c = 0; c < a->cols; c++) orow[c] = xr[c] * a->scalar; break;
        }
    }
    return QD_OK;
}

typedef struct {
    const float *x;
    size_t count[QD_ROWS_MAX_PARTS];
} nonfinite_job;

static void nonfinite_part(void *arg, int part, size_t i0, size_t i1) {
    nonfinite_job *j = arg;
    size_t c = 0;
    for (size_t i = i0; i < i1; i++) { /* the exponent all ones: Inf or NaN (a bit test that vectorizes) */
        uint32_t u;
        memcpy(&u, &j->x[i], sizeof u);
        c += (u & 0x7f800000u) == 0x7f800000u;
    }
    j->count[part] = c;
}

qd_status qd_cpu_reduce(qd_backend_t be, const struct qd_reduce_args *a) {
    if (a->kind == QD_RED_NONFINITE) { /* a count: exact in any order, so one path for both numerics */
        nonfinite_job j = {.x = qd_ref_f32(a->a)};
        qd_rows_run(a->n, 1, nonfinite_part, &j);
        size_t total = 0;
        for (int t = 0; t < qd_rows_parts(a->n, 1); t++) total += j.count[t];
        *a->out = (double)total;
        return QD_OK;
    }
    if (qd_cpu_exact(be)) return qd_cpu_reduce_exact(be, a);
    const float *x = qd_ref_f32(a->a);
    const float *y = a->b.buf ? qd_ref_f32(a->b) : NULL;
    double acc = 0;
    for (size_t i = 0; i < a->n; i++) {
        switch (a->kind) {
        case QD_RED_SQDIFF: { double d = (double)x[i] - (double)y[i]; acc += d * d; } break;
        case QD_RED_SUMSQ: acc += (double)x[i] * x[i]; break;
        case QD_RED_NONFINITE: acc += !isfinite(x[i]); break;
        case QD_RED_ABSMAX: if (fabs((double)x[i]) > acc) acc = fabs((double)x[i]); break;
        }
    }
    *a->out = acc;
    return QD_OK;
}

qd_status qd_cpu_colstat(qd_backend_t be, const struct qd_colstat_args *a) {
    (void)be;
    float *out = qd_ref_f32(a->out);
    const float *s = qd_ref_f32(a->src);
    if (!a->accumulate) memset(out, 0, a->cols * 4);
    size_t gs = a->group_size;
    if (a->kind == QD_COLSTAT_ABS_SUM) {
        /* accumulated in double (thousands of tokens summed in fp32 would drift), row by row */
        double *acc = calloc(a->cols, sizeof *acc);
        if (!acc) return qd_fail(QD_ERR_NOMEM, "cpu backend: colstat: out of memory for %zu columns", a->cols);
        for (size_t r = 0; r < a->rows; r++) {
            const float *row = s + r * a->ld;
            for (size_t c = 0; c < a->cols; c++) acc[c] += fabs((double)row[c]);
        }
        for (size_t c = 0; c < a->cols; c++) out[c] += (float)acc[c];
        free(acc);
        return QD_OK;
    }
    double *acc = calloc(a->cols, sizeof *acc);
    if (!acc) return qd_fail(QD_ERR_NOMEM, "cpu backend: colstat: out of memory for %zu columns", a->cols);
    for (size_t r = 0; r < a->rows; r++) {
        const float *row = s + r * a->ld;
        for (size_t g = 0; g < a->cols; g += gs) {
            float m = 0;
            for (size_t c = g; c < g + gs; c++) m = fmaxf(m, fabsf(row[c]));
            for (size_t c = g; c < g + gs; c++) acc[c] += fabsf(row[c]) / (m + 1e-6f);
        }
    }
    for (size_t c = 0; c < a->cols; c++) out[c] += (float)acc[c];
    free(acc);
    return QD_OK;
}

qd_status qd_cpu_rows(qd_backend_t be, const struct qd_rows_args *a) {
    (void)be;
    const float *x = qd_ref_f32(a->x), *w = a->w.buf ? qd_ref_f32(a->w) : NULL;
    const int32_t *idx = qd_ref_i32(a->idx);
    float *out = qd_ref_f32(a->out);
    size_t C = a->cols;
    for (size_t i = 0; i < a->n; i++) {
        if (idx[i] < 0 || (size_t)idx[i] >= a->rows)
            return qd_fail(QD_ERR_INTERNAL, "backend cpu: rows: index %d outside 0..%zu", idx[i], a->rows - 1);
        size_t r = (size_t)idx[i];
        if (a->kind == QD_ROWS_GATHER) {
            memcpy(out + i * C, x + r * C, C * sizeof *out);
        } else {
            for (size_t c = 0; c < C; c++) {
                float p = w[i] * x[i * C + c]; /* rounded product, then the sum (-ffp-contract=off) */
                out[r * C + c] += p;
            }
        }
    }
    return QD_OK;
}
