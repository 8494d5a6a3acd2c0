/* SPDX-License-Identifier: MIT
 * run-setup.c - what every rank does before the pipeline: the plan, the staging fingerprint and
 * directory, the calibration broadcast, and the device and neighbour probes.
 */
#include "run-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-fs.h"
#include "qd-param.h"

qd_status qd_run_plan(const qd_run_opts *o, const qd_model_cfg *cfg, qd_plan *plan) {
    qd_status st = QD_OK;
    if (qd_mpi_rank() == 0) {
        qd_checkpoint *ck = NULL;
        uint64_t *cost = calloc((size_t)cfg->nlayers + 1, sizeof *cost);
        if (!cost) st = qd_fail(QD_ERR_NOMEM, "plan: out of memory");
        if (st == QD_OK) st = qd_ckpt_open(o->model_dir, 0, &ck);
        for (size_t i = 0; st == QD_OK && i < ck->ntensors; i++) {
            int b = -1;
            if (qd_model_classify(cfg, ck->tensors[i]->name, &b, NULL, 0) == QD_PART_BLOCK && b >= 0)
                cost[b] += ck->tensors[i]->nbytes;
        }
        if (st == QD_OK) st = qd_plan_make(cfg->nlayers, cost, 0, 0, qd_mpi_size(), plan);
        qd_ckpt_close(ck);
        free(cost);
    }
    QD_CHECK(qd_mpi_agree(st));
    return qd_mpi_bcast(plan, sizeof *plan);
}

qd_status qd_run_fingerprint(const qd_run_opts *o, const qd_plan *plan, qd_fingerprint *fpr) {
    const qd_qspec *s = &o->q.base;
    char buf[512];
    QD_CHECK(qd_fingerprint_add(fpr, "qdist_version", QD_VERSION));
    QD_CHECK(qd_fingerprint_add_model(fpr, o->model_dir));
    snprintf(buf, sizeof buf,
             "method=%s bits=%d group_size=%d sym=%d act_order=%d static_groups=%d damp=%.6g mse=%d "
             "true_sequential=%d scale_dtype=%s numerics=%s",
             qd_method_name(s->method), s->bits, s->group_size, s->sym, s->act_order, s->static_groups, s->damp,
             s->mse, o->q.true_sequential, qd_dtype_name(o->q.scale_dtype),
             /* fast and exact blocks differ in their bits: a resume must not mix them */
             o->backend.numerics == QD_NUMERICS_EXACT ? "exact" : "fast");
    QD_CHECK(qd_fingerprint_add(fpr, "settings", buf));
    if (o->recipe_path) {
        char *text = NULL;
        size_t len = 0;
        QD_CHECK(qd_read_file(o->recipe_path, 64u << 20, &text, &len));
        qd_status st = qd_fingerprint_add_sha256(fpr, "recipe_sha256", text, len);
        free(text);
        QD_CHECK(st);
    } else {
        QD_CHECK(qd_fingerprint_add(fpr, "recipe_sha256", "none"));
    }
    snprintf(buf, sizeof buf, "%zu x %zu sha256=%s", o->q.nseq, o->q.seq_len,
             o->calib_sha256 ? o->calib_sha256 : "none");
    QD_CHECK(qd_fingerprint_add(fpr, "calibration", buf));
    /* the exact schedule's result does not depend on the rank count; overlap's depends on the ranges */
    if (o->schedule == QD_SCHED_OVERLAP) {
        size_t n = 0;
        n += (size_t)snprintf(buf + n, sizeof buf - n, "overlap");
        for (int r = 0; r < plan->nranks && n < sizeof buf - 16; r++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, " %d+%d", plan->first[r], plan->count[r]);
        QD_CHECK(qd_fingerprint_add(fpr, "schedule", buf));
    } else {
        QD_CHECK(qd_fingerprint_add(fpr, "schedule", "exact"));
    }
    return QD_OK;
}

qd_status qd_run_open_staging(const qd_run_opts *o, const char *dir, const qd_fingerprint *fpr, qd_stage **out) {
    qd_status st = QD_OK;
    if (qd_mpi_rank() == 0) st = qd_stage_open(dir, fpr, o->resume, out);
    QD_CHECK(qd_mpi_agree(st));
    if (qd_mpi_rank() != 0) QD_CHECK(qd_mpi_agree(qd_stage_attach(dir, fpr, out)));
    else QD_CHECK(qd_mpi_agree(QD_OK));
    return QD_OK;
}

/* The device this rank computes on. With no device named, the ranks of a node take one GPU each, by
 * node-local rank (round-robin when ranks outnumber GPUs; QD_GPUS_PER_NODE caps the GPUs used);
 * *share counts this node's ranks on the same GPU, which split its memory budget (qd_run_plan_memory). */
static void map_device(const qd_backend_spec *in, qd_backend_spec *out, int *share) {
    *out = *in;
    *share = 1;
    if (qd_mpi_size() <= 1 || in->kind == QD_BACKEND_CPU || in->device != QD_DEVICE_ANY) return;
    int lr, nlocal, node;
    qd_mpi_node(&lr, &nlocal, &node);
    const char *per_env = qd_param_str(QD_PARAM_GPUS_PER_NODE);
    int per = per_env && atoi(per_env) > 0 ? atoi(per_env) : 0;
    int gpus = qd_backend_gpu_count();
    int dev = per ? lr % per : lr;
    if (gpus > 0) dev %= gpus;
    *share = 0;
    for (int j = 0; j < nlocal; j++) {
        int d = per ? j % per : j;
        if (gpus > 0) d %= gpus;
        *share += d == dev;
    }
    if (*share < 1) *share = 1;
    out->device = dev;
}

/* What the transport probe needs of both neighbours: whether this rank is on a GPU, whether the
 * pipeline's buffers are device memory, and whether a neighbour computes on the very same GPU. */
static qd_status neighbour_probes(const qd_backend_spec *be, struct qd_transport_probe *to_prev,
                                  struct qd_transport_probe *to_next) {
    int rank = qd_mpi_rank(), size = qd_mpi_size(), lr, nlocal, node;
    int gpu = qd_backend_spec_is_gpu(be);
    struct qd_transport_probe p = {.rank = rank, .backend_is_gpu = gpu,
                                   .device_buffers = qd_pipeline_device_buffers()};
    *to_prev = *to_next = p;
    to_prev->peer = rank - 1, to_next->peer = rank + 1;
    if (size <= 1) return QD_OK;
    qd_mpi_node(&lr, &nlocal, &node);
    int mine[2] = {node, gpu ? (be->device == QD_DEVICE_ANY ? 0 : be->device) : -1};
    int *all = malloc((size_t)size * sizeof mine);
    if (!all) return qd_fail(QD_ERR_NOMEM, "quantize: out of memory");
    qd_status st = qd_mpi_allgather(mine, sizeof mine, all);
    if (st == QD_OK && rank > 0)
        to_prev->same_device = gpu && all[2 * (rank - 1)] == node && all[2 * (rank - 1) + 1] == mine[1];
    if (st == QD_OK && rank < size - 1)
        to_next->same_device = gpu && all[2 * (rank + 1)] == node && all[2 * (rank + 1) + 1] == mine[1];
    free(all);
    return st;
}

qd_status qd_run_broadcast_calib(const qd_run_opts *o, int32_t **ids_out, char sha[65], size_t *nseq,
                                 size_t *seq_len) {
    uint64_t shape[2] = {o->q.nseq, o->q.seq_len};
    QD_CHECK(qd_mpi_bcast(shape, sizeof shape));
    *nseq = (size_t)shape[0];
    *seq_len = (size_t)shape[1];
    memset(sha, 0, 65);
    if (qd_mpi_rank() == 0 && o->calib_sha256) snprintf(sha, 65, "%s", o->calib_sha256);
    QD_CHECK(qd_mpi_bcast(sha, 65));
    *ids_out = NULL;
    size_t n = (size_t)(shape[0] * shape[1]);
    if (!n) return QD_OK;
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) return qd_fail(QD_ERR_NOMEM, "calibration: out of memory for %zu ids", n);
    if (qd_mpi_rank() == 0) memcpy(ids, o->calib_ids, n * sizeof *ids);
    qd_status st = qd_mpi_bcast(ids, n * sizeof *ids);
    if (st != QD_OK) {
        free(ids);
        return st;
    }
    *ids_out = ids;
    return QD_OK;
}

qd_status qd_run_devices(const qd_backend_spec *in, qd_backend_spec *out, int *share,
                         struct qd_transport_probe *to_prev, struct qd_transport_probe *to_next) {
    map_device(in, out, share);
    return neighbour_probes(out, to_prev, to_next);
}
