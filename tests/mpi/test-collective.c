/* SPDX-License-Identifier: MIT
 * test-collective.c - the data-parallel reductions (kernels/qd-collective.h) among real MPI ranks:
 * the MPI table (mpi/collective.c) on the CPU backend (test-collective-nccl.c: the NCCL table, with
 * the same checks, collective-check.h). The values are small integers, so every sum is exact and is
 * checked against the formula. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-backends.h"
#include "qd-bootstrap.h"
#include "qd-collective-mpi.h"
#include "collective-check.h"
#include "qd-log.h"
#include "qd-test.h"

static void test_mpi_table_on_cpu(void) {
    qd_collective c;
    qd_collective_mpi(NULL, &c);
    QD_EXPECT(c.rank == qd_mpi_rank() && c.size == qd_mpi_size());
    qd_backend_t be = NULL;
    QD_EXPECT_EQ_INT(qd_backend_create("cpu", &be), QD_OK);
    if (!be) return;
    check_acc64(&c, be);
    check_host_ops(&c);
    check_alltoallv(&c);
    qd_be_free(be);
}

int main(int argc, char **argv) {
    if (qd_mpi_start(&argc, &argv) != QD_OK) return 1;
    qd_log_set_level(QD_LOG_ERROR);
    QD_RUN(test_mpi_table_on_cpu);
    int rc = QD_TEST_END();
    qd_mpi_stop();
    return rc;
}
