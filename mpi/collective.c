/* SPDX-License-Identifier: MIT
 * collective.c - the data-parallel reductions (kernels/qd-collective.h) over MPI (mpi/bootstrap.c), among
 * the ranks of one group (c->user: a qd_mpi_group, NULL for every rank).
 * Device buffers cross through host memory in one place, stage_allreduce_acc64; between GPUs the
 * NCCL table (collective-nccl.c) replaces that function with a device-to-device ncclAllReduce.
 */
#include "qd-collective-mpi.h"

#include <stdlib.h>

#include "qd-bootstrap.h"
#include "qd-log.h"

/* device -> host -> MPI -> host -> device */
static qd_status stage_allreduce_acc64(const qd_collective *c, qd_backend_t be, qd_ref buf, size_t n) {
    if (c->size <= 1 || !n) return QD_OK;
    double *h = malloc(n * sizeof *h);
    if (!h) return qd_fail(QD_ERR_NOMEM, "allreduce: out of memory for %zu fp64 values", n);
    qd_status st = qd_be_download(be, &(struct qd_download_args){.src = buf, .dst = h, .n = 2 * n});
    if (st == QD_OK) st = qd_mpi_group_allreduce_sum_f64(c->user, h, n);
    if (st == QD_OK)
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = buf, .src = h, .src_dtype = QD_DT_U32, .n = 2 * n});
    free(h);
    return st;
}

static qd_status allreduce_f64(const qd_collective *c, double *buf, size_t n) {
    return c->size <= 1 ? QD_OK : qd_mpi_group_allreduce_sum_f64(c->user, buf, n);
}

static qd_status allgatherv(const qd_collective *c, const void *mine, const size_t *counts, void *all) {
    return qd_mpi_group_allgatherv(c->user, mine, counts, all);
}

static qd_status bcast(const qd_collective *c, void *buf, size_t bytes, int root) {
    return c->size <= 1 ? QD_OK : qd_mpi_group_bcast_from(c->user, buf, bytes, root);
}

static qd_status alltoallv(const qd_collective *c, const void *send, const size_t *sendcounts, void *recv,
                           const size_t *recvcounts) {
    return qd_mpi_group_alltoallv(c->user, send, sendcounts, recv, recvcounts);
}

void qd_collective_mpi(qd_mpi_group *g, qd_collective *out) {
    *out = (qd_collective){.rank = qd_mpi_group_rank(g), .size = qd_mpi_group_size(g), .user = g,
                           .allreduce_acc64 = stage_allreduce_acc64,
                           .allreduce_f64 = allreduce_f64, .allgatherv = allgatherv, .bcast = bcast,
                           .alltoallv = alltoallv};
}
