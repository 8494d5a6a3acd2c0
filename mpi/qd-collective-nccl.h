/* SPDX-License-Identifier: MIT
 * qd-collective-nccl.h - the data-parallel reductions (qd-collective.h) between GPU ranks: the device
 * fp64 sums (the Hessians) all-reduced by NCCL on the backend's stream, in its issue order, so they
 * never cross host memory; the host-side operations (small: AWQ statistics, the quantized rows) stay
 * on MPI. One NCCL communicator per group g (a pipeline stage; NULL: every rank), bootstrapped over
 * MPI. Needs one GPU per rank: NCCL refuses two ranks on one device.
 */
#ifndef QD_COLLECTIVE_NCCL_H
#define QD_COLLECTIVE_NCCL_H

#include "qd-bootstrap.h"
#include "qd-collective.h"

/* 1 when this build has NCCL (CUDA builds). */
int qd_collective_nccl_built(void);
/* Collective over g: the NCCL table into *out, on be's device (a CUDA backend). Every rank of g calls
 * it; a failure is reported by the rank that meets it. g must outlive the table. */
qd_status qd_collective_nccl(qd_mpi_group *g, qd_backend_t be, qd_collective *out);
/* Releases the communicator of a table made by qd_collective_nccl (anything else: no-op). */
void qd_collective_nccl_close(qd_collective *c);

#endif
