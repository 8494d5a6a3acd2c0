/* SPDX-License-Identifier: MIT
 * collective-nccl.c - the data-parallel reductions between GPU ranks (qd-collective-nccl.h): the MPI
 * table (collective.c) with its device reduction replaced by ncclAllReduce on the backend's stream.
 * The unique id travels over MPI from the group's rank 0. NVLink multicast (NVLS) is never requested.
 */
#include "qd-collective-nccl.h"

#include "qd-collective-mpi.h"
#include "qd-log.h"

#ifdef QD_HAVE_CUDA
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>

#include "qd-check.h"

struct nccl_coll {
    ncclComm_t comm;
    qd_collective mpi; /* the host operations */
};

int qd_collective_nccl_built(void) { return 1; }

static qd_status nccl_allreduce_acc64(const qd_collective *c, qd_backend_t be, qd_ref buf, size_t n) {
    struct nccl_coll *x = c->user;
    if (!n) return QD_OK; /* one rank too: NCCL's copy, so that a one-GPU run goes the multi-GPU way */
    void *ptr = NULL, *stream = NULL;
    qd_status st = qd_be_native(be, buf, &ptr, &stream);
    if (st != QD_OK) return st == QD_ERR_UNSUPPORTED ? qd_fail(QD_ERR_INTERNAL, "allreduce nccl: backend %s has no "
                                                                                "device buffers", qd_be_name(be))
                                                     : st;
    ncclResult_t nr = ncclAllReduce(ptr, ptr, n, ncclFloat64, ncclSum, x->comm, (cudaStream_t)stream);
    if (nr != ncclSuccess)
        return qd_fail(QD_ERR_CUDA, "allreduce nccl: %zu fp64 values on rank %d of %d failed: %s", n, c->rank,
                       c->size, ncclGetErrorString(nr));
    return QD_OK;
}

static qd_status host_allreduce_f64(const qd_collective *c, double *buf, size_t n) {
    const struct nccl_coll *x = c->user;
    return x->mpi.allreduce_f64(&x->mpi, buf, n);
}

static qd_status host_allgatherv(const qd_collective *c, const void *mine, const size_t *counts, void *all) {
    const struct nccl_coll *x = c->user;
    return x->mpi.allgatherv(&x->mpi, mine, counts, all);
}

static qd_status host_bcast(const qd_collective *c, void *buf, size_t bytes, int root) {
    const struct nccl_coll *x = c->user;
    return x->mpi.bcast(&x->mpi, buf, bytes, root);
}

/* host bytes: the rows an expert's owner receives are host staged (src/quant/moe-ep.c), so MPI moves them */
static qd_status host_alltoallv(const qd_collective *c, const void *send, const size_t *sendcounts, void *recv,
                                const size_t *recvcounts) {
    const struct nccl_coll *x = c->user;
    return x->mpi.alltoallv(&x->mpi, send, sendcounts, recv, recvcounts);
}

qd_status qd_collective_nccl(qd_mpi_group *g, qd_backend_t be, qd_collective *out) {
    struct nccl_coll *x = calloc(1, sizeof *x);
    if (!x) return qd_fail(QD_ERR_NOMEM, "collective nccl: out of memory");
    qd_collective_mpi(g, &x->mpi);
    ncclUniqueId id;
    ncclResult_t nr = ncclSuccess;
    if (x->mpi.rank == 0) nr = ncclGetUniqueId(&id);
    int ok = nr == ncclSuccess;
    qd_status st = x->mpi.bcast(&x->mpi, &ok, sizeof ok, 0); /* a failed id stops every rank, not a hang */
    if (st == QD_OK && !ok)
        st = x->mpi.rank == 0 ? qd_fail(QD_ERR_CUDA, "collective nccl: ncclGetUniqueId failed: %s", ncclGetErrorString(nr))
                              : QD_ERR_REMOTE;
    if (st == QD_OK) st = x->mpi.bcast(&x->mpi, &id, sizeof id, 0);
    void *ptr, *stream; /* the device of be is current: the communicator binds to it */
    if (st == QD_OK && qd_be_native(be, (qd_ref){0}, &ptr, &stream) == QD_ERR_UNSUPPORTED)
        st = qd_fail(QD_ERR_INTERNAL, "collective nccl: backend %s is not a GPU backend", qd_be_name(be));
    if (st == QD_OK) {
        ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
        nr = ncclCommInitRankConfig(&x->comm, x->mpi.size, id, x->mpi.rank, &cfg);
        if (nr != ncclSuccess)
            st = qd_fail(QD_ERR_CUDA, "collective nccl: ncclCommInitRank failed on rank %d of %d: %s", x->mpi.rank,
                         x->mpi.size, ncclGetErrorString(nr));
    }
    if (st != QD_OK) {
        free(x);
        return st;
    }
    *out = (qd_collective){.rank = x->mpi.rank, .size = x->mpi.size, .user = x,
                           .allreduce_acc64 = nccl_allreduce_acc64, .allreduce_f64 = host_allreduce_f64,
                           .allgatherv = host_allgatherv, .bcast = host_bcast,
                           .alltoallv = host_alltoallv};
    return QD_OK;
}

void qd_collective_nccl_close(qd_collective *c) {
    if (!c || c->allreduce_acc64 != nccl_allreduce_acc64) return;
    struct nccl_coll *x = c->user;
    ncclCommDestroy(x->comm);
    free(x);
    c->user = NULL;
}
#else
int qd_collective_nccl_built(void) { return 0; }

qd_status qd_collective_nccl(qd_mpi_group *g, qd_backend_t be, qd_collective *out) {
    (void)g, (void)be, (void)out;
    return qd_fail(QD_ERR_UNSUPPORTED, "collective nccl: this qdist was built without CUDA/NCCL");
}

void qd_collective_nccl_close(qd_collective *c) { (void)c; }
#endif
