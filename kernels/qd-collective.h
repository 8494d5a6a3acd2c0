/* SPDX-License-Identifier: MIT
 * qd-collective.h - the reductions data-parallel ranks share, as the algorithms see them: a table of
 * function pointers filled by the run (mpi/collective.c over MPI, mpi/collective-nccl.c over NCCL) and
 * handed to the quantize context, so src/quant never calls MPI or includes shard/.
 *
 * Every rank calls the same operations in the same order (collectives). Every result is the same bits
 * on every rank. A failure is reported once, by the rank that detects it; the caller passes the
 * status up and the run ends the job (qd_mpi_fatal), so nobody waits forever.
 */
#ifndef QD_COLLECTIVE_H
#define QD_COLLECTIVE_H

#include <stddef.h>

#include "qd-backend.h"

typedef struct qd_collective qd_collective;
struct qd_collective {
    int rank, size;
    void *user;
    /* n fp64 values held in 2n elements of buf on be (qd_be_acc64's layout): the elementwise sum over
     * ranks, in place. For a given rank count the summation order is fixed (same bits run after run);
     * it depends on the rank count, at fp64 precision. The MPI table stages the buffer through host
     * memory; the NCCL table (collective-nccl.c) reduces it on the devices. */
    qd_status (*allreduce_acc64)(const qd_collective *c, qd_backend_t be, qd_ref buf, size_t n);
    /* host fp64 [n]: the elementwise sum over ranks, in place */
    qd_status (*allreduce_f64)(const qd_collective *c, double *buf, size_t n);
    /* host bytes: rank r's counts[r] bytes (mine) concatenated in rank order into all, on every rank */
    qd_status (*allgatherv)(const qd_collective *c, const void *mine, const size_t *counts, void *all);
    /* host bytes from root to every rank, in place */
    qd_status (*bcast)(const qd_collective *c, void *buf, size_t bytes, int root);
    /* host bytes, all to all: send holds sendcounts[d] bytes for each rank d in rank order; recv gets
     * recvcounts[s] bytes from each rank s in rank order. recvcounts[s] must equal rank s's
     * sendcounts[this rank] (exchange them first, e.g. with allgatherv). No size limit. */
    qd_status (*alltoallv)(const qd_collective *c, const void *send, const size_t *sendcounts, void *recv,
                           const size_t *recvcounts);
};

/* The contiguous share [*first, *first + *count) of n items that rank r of size ranks owns, in whole
 * units of `unit` items (the last unit may be short): ranks past the units get none. */
static inline void qd_collective_share(size_t n, size_t unit, int r, int size, size_t *first, size_t *count) {
    size_t units = unit ? (n + unit - 1) / unit : 0, u0 = units * (size_t)r / (size_t)size,
           u1 = units * (size_t)(r + 1) / (size_t)size;
    size_t a = u0 * unit, b = u1 * unit;
    if (a > n) a = n;
    if (b > n) b = n;
    *first = a, *count = b - a;
}

#endif
