/* SPDX-License-Identifier: MIT
 * qsource.c - the parts of the quantization-source interface that do not depend on the backing store. */
#include "qd-qsource.h"

#include <stdlib.h>

#include "qd-log.h"

#include "qd-safetensors.h"

qd_status qd_qsource_next(const qd_qsource *s, size_t *i, int with_codes, qd_qlinear *out, int *done) {
    *done = 0;
    if (*i >= s->iface->n_layers(s->ctx)) {
        *done = 1;
        return QD_OK;
    }
    qd_status st = s->iface->load_layer(s->ctx, *i, with_codes, out);
    if (st == QD_OK) (*i)++;
    return st;
}

qd_status qd_qsource_get(const qd_qsource *s, const char *prefix, int with_codes, qd_qlinear *out, int *found) {
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
