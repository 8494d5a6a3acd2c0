/* SPDX-License-Identifier: MIT
 * mpi-hello.c - the 2-task proof for the SLURM test: each rank prints its rank, the size and the sum of
 * all ranks (an MPI_Allreduce, so the ranks really talked to each other). */
#include <mpi.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) return 1;
    int rank = 0, size = 0, sum = -1;
    char host[64] = "?";
    gethostname(host, sizeof host);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("mpi-hello rank %d of %d on %s rank-sum %d\n", rank, size, host, sum);
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
