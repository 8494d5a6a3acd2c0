/* SPDX-License-Identifier: MIT
 * qd-collective-mpi.h - the data-parallel reductions (qd-collective.h) between the MPI ranks of the
 * run, over the ranks of group g (a pipeline stage; NULL: every rank, MPI_COMM_WORLD); device buffers
 * are staged through host memory. g must outlive the table.
 */
#ifndef QD_COLLECTIVE_MPI_H
#define QD_COLLECTIVE_MPI_H

#include "qd-bootstrap.h"
#include "qd-collective.h"

void qd_collective_mpi(qd_mpi_group *g, qd_collective *out);

#endif
