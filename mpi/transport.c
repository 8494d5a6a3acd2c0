/* SPDX-License-Identifier: MIT
 * Transport selection: the first table entry whose probe accepts the pair wins (NCCL's pattern). */
#include <stdlib.h>

#include "qd-check.h"
#include "qd-transport.h"

static const struct qd_transport_i *const transports[] = {
#ifdef QD_HAVE_CUDA
    &qd_transport_nccl,
#endif
    &qd_transport_mpi,
};

qd_status qd_transport_select(const struct qd_transport_probe *p, qd_transport **out) {
    *out = NULL;
    for (size_t i = 0; i < sizeof transports / sizeof transports[0]; i++) {
        const struct qd_transport_i *t = transports[i];
        if (t->device_buffers != p->device_buffers || !t->can_connect(p)) continue;
        qd_transport *tr;
        QD_ALLOC(tr, 1);
        tr->iface = t;
        qd_status st = t->create(p, &tr->ctx);
        if (st != QD_OK) {
            free(tr);
            return st;
        }
        qd_debug("transport %s between ranks %d and %d", t->name, p->rank, p->peer);
        *out = tr;
        return QD_OK;
    }
    return qd_fail(QD_ERR_UNSUPPORTED, "no transport can connect rank %d with rank %d (%s buffers)", p->rank, p->peer,
                   p->device_buffers ? "device" : "host");
}

void qd_transport_free(qd_transport *t) {
    if (!t) return;
    if (t->iface->destroy) t->iface->destroy(t->ctx);
    free(t);
}

qd_status qd_transport_isend(qd_transport *t, const void *buf, size_t bytes, int peer, int tag, qd_xfer *x) {
    return t->iface->isend(t->ctx, buf, bytes, peer, tag, x);
}

qd_status qd_transport_irecv(qd_transport *t, void *buf, size_t bytes, int peer, int tag, qd_xfer *x) {
    return t->iface->irecv(t->ctx, buf, bytes, peer, tag, x);
}

qd_status qd_transport_wait(qd_transport *t, qd_xfer *x) {
    if (!x->active) return QD_OK;
    return t->iface->wait(t->ctx, x);
}
