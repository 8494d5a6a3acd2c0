/* SPDX-License-Identifier: MIT */
#include "qd-bootstrap.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-log.h"

qd_status qd_mpi_start(int *argc, char ***argv) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return qd_fail(QD_ERR_MPI, "MPI_Init failed");
    }
    /* return codes instead of MPI's default abort-with-its-own-message, so we report one line */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    qd_rank_set(rank, size);
    return QD_OK;
}

void qd_mpi_stop(void) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Finalize();
}

int qd_mpi_rank(void) { return qd_rank.rank; }
int qd_mpi_size(void) { return qd_rank.nranks; }

void qd_mpi_fatal(qd_status st, int block) {
    if (qd_rank.nranks <= 1) return;
    if (block >= 0)
        fprintf(stderr, "qdist: [rank %d] rank %d on host %s failed in block %d (%s); ending the job\n",
                qd_rank.rank, qd_rank.rank, qd_rank.host, block, qd_status_str(st));
    else
        fprintf(stderr, "qdist: [rank %d] rank %d on host %s failed (%s); ending the job\n", qd_rank.rank,
                qd_rank.rank, qd_rank.host, qd_status_str(st));
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

qd_status qd_mpi_bcast(void *buf, size_t bytes) { return qd_mpi_bcast_from(buf, bytes, 0); }

static qd_status bcast_on(MPI_Comm comm, int size, void *buf, size_t bytes, int root) {
    if (size <= 1) return QD_OK;
    char *p = buf;
    while (bytes > 0) {
        int n = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
        if (MPI_Bcast(p, n, MPI_BYTE, root, comm) != MPI_SUCCESS)
            return qd_fail(QD_ERR_MPI, "broadcast of %zu bytes from rank %d failed", bytes, root);
        p += n;
        bytes -= (size_t)n;
    }
    return QD_OK;
}

qd_status qd_mpi_bcast_from(void *buf, size_t bytes, int root) {
    return bcast_on(MPI_COMM_WORLD, qd_rank.nranks, buf, bytes, root);
}

void qd_mpi_node(int *local_rank, int *nlocal, int *node) {
    *local_rank = 0, *nlocal = 1, *node = qd_rank.rank;
    if (qd_rank.nranks <= 1) return;
    MPI_Comm c;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &c) != MPI_SUCCESS) return;
    MPI_Comm_rank(c, local_rank);
    MPI_Comm_size(c, nlocal);
    int lowest = qd_rank.rank;
    if (MPI_Allreduce(&qd_rank.rank, &lowest, 1, MPI_INT, MPI_MIN, c) == MPI_SUCCESS) *node = lowest;
    MPI_Comm_free(&c);
}

qd_status qd_mpi_allgather(const void *mine, size_t bytes, void *all) {
    if (qd_rank.nranks <= 1) {
        memcpy(all, mine, bytes);
        return QD_OK;
    }
    if (bytes > (size_t)INT_MAX) return qd_fail(QD_ERR_INTERNAL, "allgather of %zu bytes per rank", bytes);
    if (MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS)
        return qd_fail(QD_ERR_MPI, "gathering %zu bytes from every rank failed", bytes);
    return QD_OK;
}

qd_status qd_mpi_gather(const void *mine, size_t bytes, void *all_on_root) {
    if (qd_rank.nranks <= 1) {
        memcpy(all_on_root, mine, bytes);
        return QD_OK;
    }
    if (bytes > (size_t)INT_MAX) return qd_fail(QD_ERR_INTERNAL, "gather of %zu bytes per rank", bytes);
    if (MPI_Gather(mine, (int)bytes, MPI_BYTE, all_on_root, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        return qd_fail(QD_ERR_MPI, "gathering %zu bytes from every rank on rank 0 failed", bytes);
    return QD_OK;
}

qd_status qd_mpi_gatherv(const void *mine, size_t bytes, void **all_on_root, size_t *total) {
    int size = qd_rank.nranks, rank = qd_rank.rank;
    *all_on_root = NULL, *total = 0;
    if (size <= 1) {
        if (!bytes) return QD_OK;
        char *copy = malloc(bytes);
        if (!copy) return qd_fail(QD_ERR_NOMEM, "gather: out of memory for %zu bytes", bytes);
        memcpy(copy, mine, bytes);
        *all_on_root = copy, *total = bytes;
        return QD_OK;
    }
    qd_status st = QD_OK;
    if (bytes > (size_t)INT_MAX) st = qd_fail(QD_ERR_INTERNAL, "gather of %zu bytes from rank %d", bytes, rank);
    int count = st == QD_OK ? (int)bytes : 0, *counts = NULL, *displs = NULL;
    if (rank == 0) {
        counts = calloc((size_t)size, sizeof *counts), displs = calloc((size_t)size, sizeof *displs);
        if ((!counts || !displs) && st == QD_OK) st = qd_fail(QD_ERR_NOMEM, "gather: out of memory");
    }
    if (MPI_Gather(&count, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS && st == QD_OK)
        st = qd_fail(QD_ERR_MPI, "gathering the byte counts of every rank on rank 0 failed");
    size_t sum = 0;
    if (rank == 0 && counts && displs)
        for (int r = 0; r < size; r++) displs[r] = (int)sum, sum += (size_t)counts[r];
    if (sum > (size_t)INT_MAX && st == QD_OK) st = qd_fail(QD_ERR_INTERNAL, "gather of %zu bytes in all", sum);
    char *buf = rank == 0 && sum ? malloc(sum) : NULL;
    if (rank == 0 && sum && !buf && st == QD_OK) st = qd_fail(QD_ERR_NOMEM, "gather: out of memory for %zu bytes", sum);
    if (MPI_Gatherv(mine, count, MPI_BYTE, buf, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS &&
        st == QD_OK)
        st = qd_fail(QD_ERR_MPI, "gathering %zu bytes from every rank on rank 0 failed", bytes);
    free(counts), free(displs);
    if (st != QD_OK) {
        free(buf);
        return st;
    }
    *all_on_root = buf, *total = sum;
    return QD_OK;
}

/* in pieces of at most INT_MAX elements: MPI counts are int */
static qd_status allreduce_sum(MPI_Comm comm, int size, void *buf, size_t n, size_t elem, MPI_Datatype type,
                               const char *what) {
    if (size <= 1) return QD_OK;
    char *p = buf;
    while (n > 0) {
        int m = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        if (MPI_Allreduce(MPI_IN_PLACE, p, m, type, MPI_SUM, comm) != MPI_SUCCESS)
            return qd_fail(QD_ERR_MPI, "sum of %zu %s values over the ranks failed", n, what);
        p += (size_t)m * elem;
        n -= (size_t)m;
    }
    return QD_OK;
}

qd_status qd_mpi_allreduce_sum_f32(float *buf, size_t n) {
    return allreduce_sum(MPI_COMM_WORLD, qd_rank.nranks, buf, n, sizeof *buf, MPI_FLOAT, "fp32");
}
qd_status qd_mpi_allreduce_sum_f64(double *buf, size_t n) {
    return allreduce_sum(MPI_COMM_WORLD, qd_rank.nranks, buf, n, sizeof *buf, MPI_DOUBLE, "fp64");
}

static qd_status allgatherv_on(MPI_Comm comm, int rank, int size, const void *mine, const size_t *counts, void *all) {
    if (size <= 1) {
        memcpy(all, mine, counts[0]);
        return QD_OK;
    }
    int *cnt = calloc((size_t)size, sizeof *cnt), *displs = calloc((size_t)size, sizeof *displs);
    if (!cnt || !displs) {
        free(cnt), free(displs);
        return qd_fail(QD_ERR_NOMEM, "allgather: out of memory");
    }
    size_t sum = 0;
    for (int r = 0; r < size; r++) displs[r] = (int)sum, cnt[r] = (int)counts[r], sum += counts[r];
    qd_status st = QD_OK;
    if (sum > (size_t)INT_MAX) st = qd_fail(QD_ERR_INTERNAL, "allgather of %zu bytes in all", sum);
    else if (MPI_Allgatherv(mine, cnt[rank], MPI_BYTE, all, cnt, displs, MPI_BYTE, comm) != MPI_SUCCESS)
        st = qd_fail(QD_ERR_MPI, "gathering %zu bytes from every rank on every rank failed", sum);
    free(cnt), free(displs);
    return st;
}

qd_status qd_mpi_allgatherv(const void *mine, const size_t *counts, void *all) {
    return allgatherv_on(MPI_COMM_WORLD, qd_rank.rank, qd_rank.nranks, mine, counts, all);
}

struct qd_mpi_group {
    MPI_Comm comm;
    int rank, size;
};

qd_status qd_mpi_group_split(int color, qd_mpi_group **out) {
    *out = NULL;
    qd_mpi_group *g = calloc(1, sizeof *g);
    if (!g) return qd_fail(QD_ERR_NOMEM, "rank groups: out of memory");
    g->comm = MPI_COMM_NULL, g->size = 1;
    if (qd_rank.nranks > 1) {
        if (MPI_Comm_split(MPI_COMM_WORLD, color, qd_rank.rank, &g->comm) != MPI_SUCCESS) {
            free(g);
            return qd_fail(QD_ERR_MPI, "splitting the ranks into groups (group %d) failed", color);
        }
        if (MPI_Comm_set_errhandler(g->comm, MPI_ERRORS_RETURN) != MPI_SUCCESS ||
            MPI_Comm_rank(g->comm, &g->rank) != MPI_SUCCESS || MPI_Comm_size(g->comm, &g->size) != MPI_SUCCESS) {
            qd_mpi_group_free(g);
            return qd_fail(QD_ERR_MPI, "setting up the group of ranks %d failed", color);
        }
    }
    *out = g;
    return QD_OK;
}

void qd_mpi_group_free(qd_mpi_group *g) {
    if (!g) return;
    if (g->comm != MPI_COMM_NULL) MPI_Comm_free(&g->comm);
    free(g);
}

int qd_mpi_group_rank(const qd_mpi_group *g) { return g ? g->rank : qd_rank.rank; }
int qd_mpi_group_size(const qd_mpi_group *g) { return g ? g->size : qd_rank.nranks; }

#define GROUP_COMM(g) ((g) && (g)->comm != MPI_COMM_NULL ? (g)->comm : MPI_COMM_WORLD)

qd_status qd_mpi_group_allreduce_sum_f32(const qd_mpi_group *g, float *buf, size_t n) {
    return allreduce_sum(GROUP_COMM(g), qd_mpi_group_size(g), buf, n, sizeof *buf, MPI_FLOAT, "fp32");
}
qd_status qd_mpi_group_allreduce_sum_f64(const qd_mpi_group *g, double *buf, size_t n) {
    return allreduce_sum(GROUP_COMM(g), qd_mpi_group_size(g), buf, n, sizeof *buf, MPI_DOUBLE, "fp64");
}
qd_status qd_mpi_group_allgatherv(const qd_mpi_group *g, const void *mine, const size_t *counts, void *all) {
    return allgatherv_on(GROUP_COMM(g), qd_mpi_group_rank(g), qd_mpi_group_size(g), mine, counts, all);
}
qd_status qd_mpi_group_bcast_from(const qd_mpi_group *g, void *buf, size_t bytes, int root) {
    return bcast_on(GROUP_COMM(g), qd_mpi_group_size(g), buf, bytes, root);
}

#define A2A_PIECE ((size_t)1 << 30)
#define A2A_TAG 0x7141

static size_t pieces(size_t bytes) { return (bytes + A2A_PIECE - 1) / A2A_PIECE; }

qd_status qd_mpi_group_alltoallv(const qd_mpi_group *g, const void *send, const size_t *sendcounts, void *recv,
                                 const size_t *recvcounts) {
    int me = qd_mpi_group_rank(g), size = qd_mpi_group_size(g);
    MPI_Comm comm = GROUP_COMM(g);
    size_t nreq = 0, so = 0, ro = 0, mine_so = 0, mine_ro = 0;
    for (int r = 0; r < size; r++)
        if (r != me) nreq += pieces(sendcounts[r]) + pieces(recvcounts[r]);
    MPI_Request *req = malloc((nreq + 1) * sizeof *req);
    if (!req) return qd_fail(QD_ERR_NOMEM, "all-to-all: out of memory for %zu requests", nreq);
    size_t k = 0;
    int ok = 1;
    for (int r = 0; r < size; r++) { /* receives first, then sends: pieces match in order (non-overtaking) */
        if (r == me) mine_ro = ro;
        for (size_t at = 0; r != me && at < recvcounts[r] && ok; at += A2A_PIECE) {
            size_t n = recvcounts[r] - at < A2A_PIECE ? recvcounts[r] - at : A2A_PIECE;
            ok = MPI_Irecv((char *)recv + ro + at, (int)n, MPI_BYTE, r, A2A_TAG, comm, &req[k++]) == MPI_SUCCESS;
        }
        ro += recvcounts[r];
    }
    for (int r = 0; r < size && ok; r++) {
        if (r == me) mine_so = so;
        for (size_t at = 0; r != me && at < sendcounts[r] && ok; at += A2A_PIECE) {
            size_t n = sendcounts[r] - at < A2A_PIECE ? sendcounts[r] - at : A2A_PIECE;
            ok = MPI_Isend((const char *)send + so + at, (int)n, MPI_BYTE, r, A2A_TAG, comm, &req[k++]) == MPI_SUCCESS;
        }
        so += sendcounts[r];
    }
    if (ok && k) ok = MPI_Waitall((int)k, req, MPI_STATUSES_IGNORE) == MPI_SUCCESS;
    free(req);
    if (!ok) return qd_fail(QD_ERR_MPI, "all-to-all of %zu bytes sent, %zu received on rank %d failed", so, ro, me);
    if (sendcounts[me] != recvcounts[me])
        return qd_fail(QD_ERR_INTERNAL, "all-to-all: rank %d sends itself %zu bytes but expects %zu", me,
                       sendcounts[me], recvcounts[me]);
    if (sendcounts[me]) memcpy((char *)recv + mine_ro, (const char *)send + mine_so, sendcounts[me]);
    return QD_OK;
}

qd_status qd_mpi_agree(qd_status mine) {
    if (qd_rank.nranks <= 1) return mine;
    int in = (int)mine, out = 0;
    if (MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        return qd_fail(QD_ERR_MPI, "status agreement across ranks failed");
    if (mine != QD_OK) return mine;
    return out == QD_OK ? QD_OK : QD_ERR_REMOTE;
}
