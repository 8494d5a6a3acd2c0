/* SPDX-License-Identifier: MIT
 * test-collective-nccl.c - the NCCL table of the data-parallel reductions (mpi/collective-nccl.c) among
 * real MPI ranks, one GPU each (rank r on cuda:r), with collective-check.h's checks. Exits 77 with a
 * "skip:" line where it cannot run: a build without NCCL, or fewer GPUs than ranks (CI has none). */
#include <stdio.h>

#include "collective-check.h"
#include "qd-backends.h"
#include "qd-bootstrap.h"
#include "qd-collective-nccl.h"
#include "qd-log.h"

static void nccl_table_on_gpus(int *skipped) {
    int gpus = qd_backend_gpu_count(), rank = qd_mpi_rank(), size = qd_mpi_size();
    int short_of_gpus = gpus < size; /* every rank sees the node's GPUs: one each needs size of them */
    if (!qd_collective_nccl_built() || short_of_gpus) {
        if (rank == 0)
            printf("skip: %s\n", !qd_collective_nccl_built() ? "NCCL collectives: built without NCCL"
                                                              : "NCCL collectives: fewer GPUs than ranks on this node");
        *skipped = 1;
        return;
    }
    char name[32];
    snprintf(name, sizeof name, "cuda:%d", rank);
    qd_backend_t be = NULL;
    QD_EXPECT_EQ_INT(qd_backend_create(name, &be), QD_OK);
    if (!be) return;
    qd_collective c;
    QD_EXPECT_EQ_INT(qd_collective_nccl(NULL, be, &c), QD_OK);
    QD_EXPECT(c.rank == rank && c.size == size);
    check_acc64(&c, be);
    check_host_ops(&c);
    check_alltoallv(&c);
    qd_collective_nccl_close(&c);
    qd_be_free(be);
    if (rank == 0) printf("nccl collective: %d rank%s, one GPU each: sums exact\n", size, size > 1 ? "s" : "");
}

int main(int argc, char **argv) {
    if (qd_mpi_start(&argc, &argv) != QD_OK) return 1;
    qd_log_set_level(QD_LOG_ERROR);
    int skipped = 0;
    nccl_table_on_gpus(&skipped);
    int rc = skipped ? 77 : QD_TEST_END();
    qd_mpi_stop();
    return rc;
}
