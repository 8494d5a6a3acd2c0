/* SPDX-License-Identifier: MIT
 * qd-transport.h - how activations cross ranks: one small interface, one instance per transport.
 *
 * A transport moves byte buffers between pipeline neighbours. Instances live in a table ordered by
 * preference: NCCL (device buffers, ranks on distinct GPUs), then MPI point-to-point (host buffers:
 * CPU ranks, and GPU ranks that stage through the host, as the pipeline does today).
 * qd_transport_select takes the first entry whose device_buffers matches the probe's and whose
 * can_connect accepts the pair, and logs its choice. Sends and receives are non-blocking
 * (isend/irecv + wait) so the pipeline can overlap communication with compute.
 * A failed transfer is reported once naming both ranks; a peer that dies makes MPI/NCCL abort the job
 * (errors are fatal by design: see mpi/qd-bootstrap.h).
 */
#ifndef QD_TRANSPORT_H
#define QD_TRANSPORT_H

#include <stddef.h>

#include "qd-status.h"

typedef struct qd_transport qd_transport;

/* An outstanding transfer; its content is the transport's. */
typedef struct qd_xfer {
    void *impl;
    int active;
} qd_xfer;

struct qd_transport_probe {
    int rank, peer;
    int backend_is_gpu; /* this rank computes on a GPU (qd_backend_spec_is_gpu) */
    int same_device;    /* both ranks on one GPU: NCCL cannot pair a device with itself */
    int device_buffers; /* the caller hands device pointers to isend/irecv (qd_pipeline_device_buffers) */
};

struct qd_transport_i {
    const char *name;
    int device_buffers; /* 1: moves device pointers; chosen only for a probe with device_buffers */
    int (*can_connect)(const struct qd_transport_probe *p);
    qd_status (*create)(const struct qd_transport_probe *p, void **ctx);
    qd_status (*isend)(void *ctx, const void *buf, size_t bytes, int peer, int tag, qd_xfer *x);
    qd_status (*irecv)(void *ctx, void *buf, size_t bytes, int peer, int tag, qd_xfer *x);
    qd_status (*wait)(void *ctx, qd_xfer *x);
    void (*destroy)(void *ctx); /* (optional) */
};

struct qd_transport {
    const struct qd_transport_i *iface;
    void *ctx;
};

qd_status qd_transport_select(const struct qd_transport_probe *p, qd_transport **out);
void qd_transport_free(qd_transport *t);
qd_status qd_transport_isend(qd_transport *t, const void *buf, size_t bytes, int peer, int tag, qd_xfer *x);
qd_status qd_transport_irecv(qd_transport *t, void *buf, size_t bytes, int peer, int tag, qd_xfer *x);
qd_status qd_transport_wait(qd_transport *t, qd_xfer *x);

extern const struct qd_transport_i qd_transport_mpi;
#ifdef QD_HAVE_CUDA
extern const struct qd_transport_i qd_transport_nccl;
#endif

#endif
