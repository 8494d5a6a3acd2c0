/* SPDX-License-Identifier: MIT
 * qd-bootstrap.h - MPI as the control plane: start-up, the rank context, fatal errors, broadcasts and
 * gathers. With mpi/transport-mpi.c (the data plane), the only file that calls MPI.
 *
 * qdist runs the same way with or without mpirun: qd_mpi_start initialises MPI (a singleton run is
 * one rank) and sets the rank context used in every log line. Errors are fatal for the job: a rank
 * that fails calls qd_mpi_fatal, which has already printed the one-line cause (qd_fail) and adds the
 * rank, host and block, then MPI_Abort()s so every other rank ends within seconds instead of waiting
 * forever on a receive. mpirun then exits non-zero. With one rank qd_mpi_fatal just finalises.
 */
#ifndef QD_BOOTSTRAP_H
#define QD_BOOTSTRAP_H

#include <stddef.h>

#include "qd-status.h"

qd_status qd_mpi_start(int *argc, char ***argv);
void qd_mpi_stop(void);
int qd_mpi_rank(void);
int qd_mpi_size(void);
/* Never returns when more than one rank runs. block < 0: not inside a block. */
void qd_mpi_fatal(qd_status st, int block);
/* Broadcast bytes from rank 0 (no-op with one rank). */
qd_status qd_mpi_bcast(void *buf, size_t bytes);
/* This rank's index among the ranks of its node, their number, and the node's id (its lowest world
 * rank). Without MPI's node split: 0, 1 and this rank. */
void qd_mpi_node(int *local_rank, int *nlocal, int *node);
/* Every rank's `bytes` bytes into all[rank * bytes] on every rank. */
qd_status qd_mpi_allgather(const void *mine, size_t bytes, void *all);
/* Every rank's `bytes` bytes into all_on_root[rank * bytes] on rank 0 (untouched elsewhere). */
qd_status qd_mpi_gather(const void *mine, size_t bytes, void *all_on_root);
/* Every rank's `bytes` (a different count per rank) concatenated in rank order into *all_on_root, a
 * malloc'd buffer of *total bytes on rank 0 (NULL when empty; NULL and 0 elsewhere). Every rank takes
 * part even after a local failure, so nobody waits; rank 0 reports it. */
qd_status qd_mpi_gatherv(const void *mine, size_t bytes, void **all_on_root, size_t *total);
/* The elementwise sum over ranks of n fp32 / fp64 values, in place on every rank (MPI_Allreduce:
 * a fixed order for a given rank count). */
qd_status qd_mpi_allreduce_sum_f32(float *buf, size_t n);
qd_status qd_mpi_allreduce_sum_f64(double *buf, size_t n);
/* Rank r's counts[r] bytes concatenated in rank order into all, on every rank. */
qd_status qd_mpi_allgatherv(const void *mine, const size_t *counts, void *all);
/* Broadcast bytes from rank root (no-op with one rank). */
qd_status qd_mpi_bcast_from(void *buf, size_t bytes, int root);
/* A group of ranks with its own collectives (a pipeline stage of the 2-D layout, mpi/run-dp.c).
 * qd_mpi_group_split is collective over every rank: the ranks passing the same color form one group,
 * ranked in world-rank order. A NULL group means every rank (MPI_COMM_WORLD). The group collectives
 * behave as the world ones above, among the group's ranks (rank and root: ranks in the group). */
typedef struct qd_mpi_group qd_mpi_group;
qd_status qd_mpi_group_split(int color, qd_mpi_group **out);
void qd_mpi_group_free(qd_mpi_group *g);
int qd_mpi_group_rank(const qd_mpi_group *g);
int qd_mpi_group_size(const qd_mpi_group *g);
qd_status qd_mpi_group_allreduce_sum_f32(const qd_mpi_group *g, float *buf, size_t n);
qd_status qd_mpi_group_allreduce_sum_f64(const qd_mpi_group *g, double *buf, size_t n);
qd_status qd_mpi_group_allgatherv(const qd_mpi_group *g, const void *mine, const size_t *counts, void *all);
qd_status qd_mpi_group_bcast_from(const qd_mpi_group *g, void *buf, size_t bytes, int root);
/* Host bytes all to all (qd-collective.h's alltoallv): point to point in pieces of at most 1 GiB, so
 * no count limit; the ranks' own bytes are copied. */
qd_status qd_mpi_group_alltoallv(const qd_mpi_group *g, const void *send, const size_t *sendcounts, void *recv,
                                 const size_t *recvcounts);
/* Every rank's status agreed: the worst (max) over ranks; ranks that did not fail get QD_ERR_REMOTE. */
qd_status qd_mpi_agree(qd_status mine);

#endif
