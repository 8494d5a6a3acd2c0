/* SPDX-License-Identifier: MIT
 * transport-mpi.c - MPI point-to-point transport for host buffers: CPU ranks, and GPU ranks as long as
 * the pipeline stages activations through host memory (qd_pipeline_device_buffers, today always).
 * Large messages are split in chunks below INT_MAX bytes: MPI counts are int. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "qd-check.h"
#include "qd-transport.h"

#define CHUNK ((size_t)1 << 30)

struct mpi_xfer {
    int n;
    MPI_Request req[];
};

static const char *mpi_err_str(int rc) {
    static _Thread_local char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return "unknown MPI error";
    return buf;
}

static int mpi_can_connect(const struct qd_transport_probe *p) {
    (void)p;
    return 1;
}

static qd_status mpi_create(const struct qd_transport_probe *p, void **ctx) {
    (void)p;
    *ctx = NULL;
    return QD_OK;
}

static qd_status post(void *buf, size_t bytes, int peer, int tag, qd_xfer *x, int is_send) {
    size_t nchunks = bytes ? (bytes + CHUNK - 1) / CHUNK : 1;
    struct mpi_xfer *m = malloc(sizeof *m + nchunks * sizeof(MPI_Request));
    if (!m) return qd_fail(QD_ERR_NOMEM, "transport mpi: out of memory for %zu requests", nchunks);
    m->n = (int)nchunks;
    for (size_t i = 0; i < nchunks; i++) {
        size_t off = i * CHUNK;
        int len = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
        int rc = is_send ? MPI_Isend((char *)buf + off, len, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &m->req[i])
                         : MPI_Irecv((char *)buf + off, len, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &m->req[i]);
        if (rc != MPI_SUCCESS) {
            free(m);
            return qd_fail(QD_ERR_MPI, "transport mpi: %s of %zu bytes with rank %d failed: %s",
                           is_send ? "send" : "receive", bytes, peer, mpi_err_str(rc));
        }
    }
    x->impl = m;
    x->active = 1;
    return QD_OK;
}

static qd_status mpi_isend(void *ctx, const void *buf, size_t bytes, int peer, int tag, qd_xfer *x) {
    (void)ctx;
    return post((void *)buf, bytes, peer, tag, x, 1);
}

static qd_status mpi_irecv(void *ctx, void *buf, size_t bytes, int peer, int tag, qd_xfer *x) {
    (void)ctx;
    return post(buf, bytes, peer, tag, x, 0);
}

static qd_status mpi_wait(void *ctx, qd_xfer *x) {
    (void)ctx;
    struct mpi_xfer *m = x->impl;
    int rc = MPI_Waitall(m->n, m->req, MPI_STATUSES_IGNORE);
    free(m);
    x->impl = NULL;
    x->active = 0;
    if (rc != MPI_SUCCESS) return qd_fail(QD_ERR_MPI, "transport mpi: wait failed: %s", mpi_err_str(rc));
    return QD_OK;
}

const struct qd_transport_i qd_transport_mpi = {
    .name = "mpi",
    .device_buffers = 0,
    .can_connect = mpi_can_connect,
    .create = mpi_create,
    .isend = mpi_isend,
    .irecv = mpi_irecv,
    .wait = mpi_wait,
    .destroy = NULL,
};
