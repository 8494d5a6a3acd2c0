/* SPDX-License-Identifier: MIT
 * qsource.c - the parts of the quantization-source interface that do not depend on the backing store. */
#include "qd-qsource.h"

#include <math.h>
#include <stdlib.h>

#include "qd-log.h"

#include "qd-safetensors.h"

void qd_qlayer_free(qd_qlayer *l) {
    free(l->codes);
    free(l->scales);
    free(l->zeros);
    free(l->g_idx);
    l->codes = NULL;
    l->scales = NULL;
    l->zeros = NULL;
    l->g_idx = NULL;
}

int qd_qlayer_g_idx_sequential(const qd_qlayer *l) {
    for (int k = 0; k < l->K; k++) {
        int expect = l->group_size > 0 ? k / l->group_size : 0;
        if (l->g_idx[k] != expect) return 0;
    }
    return 1;
}

void qd_qlayer_round_scales(qd_qlayer *l, qd_dtype dt) {
    if (!l->scales || !qd_dtype_is_float(dt) || dt == QD_DT_F32 || dt == QD_DT_F64) return;
    size_t n = (size_t)l->G * l->N;
    for (size_t i = 0; i < n; i++) {
        unsigned char b[8];
        qd_from_f32(dt, &l->scales[i], b, 1);
        qd_to_f32(dt, b, &l->scales[i], 1);
    }
}

qd_status qd_qlayer_check_scales(const qd_qlayer *l, qd_dtype dt, const char *what) {
    if (!l->scales) return QD_OK;
    for (int g = 0; g < l->G; g++)
        for (int n = 0; n < l->N; n++) {
            float s = l->scales[(size_t)g * l->N + n], r = s;
            if (qd_dtype_is_float(dt) && dt != QD_DT_F32 && dt != QD_DT_F64) {
                unsigned char b[8];
                qd_from_f32(dt, &s, b, 1);
                qd_to_f32(dt, b, &r, 1);
            }
            if (!isfinite(s))
                return qd_fail(QD_ERR_NUMERIC, "%s: scale of row %d, group %d is %g (not finite)",
                               l->name, n, g, (double)s);
            if (!isfinite(r))
                return qd_fail(QD_ERR_NUMERIC, "%s: scale of row %d, group %d is %g, which does not fit %s (%s "
                               "stores scales as %s)", l->name, n, g, (double)s, qd_dtype_name(dt),
                               what, qd_dtype_name(dt));
        }
    return QD_OK;
}

void qd_qlayer_dequant(const qd_qlayer *l, float *w) {
    for (int n = 0; n < l->N; n++)
        for (int k = 0; k < l->K; k++) {
            size_t gi = (size_t)l->g_idx[k] * l->N + n;
            w[(size_t)n * l->K + k] = (float)((int)l->codes[(size_t)n * l->K + k] - l->zeros[gi]) * l->scales[gi];
        }
}

qd_status qd_qsource_next(const qd_qsource *s, size_t *i, int with_codes, qd_qlayer *out, int *done) {
    *done = 0;
    if (*i >= s->iface->n_layers(s->ctx)) {
        *done = 1;
        return QD_OK;
    }
    qd_status st = s->iface->load_layer(s->ctx, *i, with_codes, out);
    if (st == QD_OK) (*i)++;
    return st;
}

qd_status qd_qsource_get(const qd_qsource *s, const char *prefix, int with_codes, qd_qlayer *out, int *found) {
    long i = s->iface->find_layer(s->ctx, prefix);
    *found = i >= 0;
    if (i < 0) return QD_OK;
    return s->iface->load_layer(s->ctx, (size_t)i, with_codes, out);
}

void qd_qsource_close(qd_qsource *s) {
    if (s && s->iface) s->iface->free(s->ctx);
    if (s) {
        s->iface = NULL;
        s->ctx = NULL;
    }
}

void qd_plain_info_of(const qd_st_tensor *t, qd_plain_info *out) {
    out->name = t->name;
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    for (int d = 0; d < t->ndim && d < 8; d++) out->shape[d] = t->shape[d];
    out->nbytes = t->nbytes;
}
