/* SPDX-License-Identifier: MIT
 * run-collective.c - which table carries the data-parallel reductions of a run (--collectives): NCCL
 * between ranks that each compute on a GPU of their own, MPI through host memory otherwise. Every
 * rank of the run calls it at the same point (it agrees on the outcome).
 */
#include "run-internal.h"

#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-collective-nccl.h"

qd_status qd_run_collectives(qd_run *k, qd_mpi_group *group, const qd_backend_spec *spec, qd_collective *coll,
                             int *nccl) {
    *nccl = 0;
    qd_collectives want = k->o->collectives;
    if (!k->dp || want == QD_COLL_MPI) return QD_OK;
    int gpu = qd_backend_spec_is_gpu(spec);
    double shared = gpu && k->dev_share == 1 ? 0 : 1; /* ranks of the stage without a GPU of their own */
    QD_CHECK(qd_mpi_agree(coll->allreduce_f64(coll, &shared, 1)));
    if (shared > 0 || !qd_collective_nccl_built()) {
        if (want == QD_COLL_AUTO) return QD_OK;
        /* the same facts on every rank of the stage: its first rank says so */
        qd_status st = QD_ERR_USAGE;
        if (coll->rank == 0)
            st = !qd_collective_nccl_built()
                     ? qd_fail(QD_ERR_USAGE, "--collectives nccl: this qdist was built without NCCL (use auto or mpi)")
                 : !gpu ? qd_fail(QD_ERR_USAGE, "--collectives nccl needs a GPU backend (this run computes on cpu; use "
                                                "auto or mpi)")
                        : qd_fail(QD_ERR_USAGE, "--collectives nccl needs one GPU per rank: %.0f of the stage's %d ranks "
                                                "share a GPU (one rank per GPU, or --collectives mpi)", shared, coll->size);
        return qd_mpi_agree(st);
    }
    qd_collective c;
    QD_CHECK(qd_mpi_agree(qd_collective_nccl(group, k->be, &c)));
    *coll = c; /* same ranks, same order: the quantize context keeps pointing at *coll */
    *nccl = 1;
    return QD_OK;
}
