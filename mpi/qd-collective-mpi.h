/* SPDX-License-Identifier: MIT
 * qd-collective-mpi.h - the data-parallel reductions (qd-collective.h) between the MPI ranks of the
 * run, over MPI_COMM_WORLD; device buffers are staged through host memory.
 */
#ifndef QD_COLLECTIVE_MPI_H
#define QD_COLLECTIVE_MPI_H

#include "qd-collective.h"

void qd_collective_mpi(qd_collective *out);

#endif
