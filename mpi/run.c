/* SPDX-License-Identifier: MIT
 * run.c - the lifecycle of a quantization run on every rank: set-up, the block pipeline, the gathers,
 * rank 0's report and export, clean-up; and the rule that a failure inside the pipeline ends the job.
 */
#include "qd-quantize-run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-collective-mpi.h"
#include "qd-collective-nccl.h"
#include "qd-fs.h"
#include "qd-param.h"
#include "run-internal.h"

/* What this rank computes with: the staging writer, the backend, the memory plan, the
 * quantizer, the activations (and rank 0's embedding head, the overlap schedule's full-precision
 * forward). Rank-local: the caller agrees on the outcome. */
static qd_status open_rank(qd_run *k, qd_quantize_opts *q, const qd_backend_spec *spec, size_t micro) {
    const qd_run_opts *o = k->o;
    const qd_model_cfg *cfg = k->cfg;
    int rank = qd_mpi_rank(), size = qd_mpi_size();
    QD_CHECK(qd_stage_writer_start(k->stage, &k->writer));
    QD_CHECK(qd_backend_open(spec, &k->be));
    qd_phase_reset();
    QD_CHECK(qd_run_plan_memory(k, q));
    QD_CHECK(qd_qctx_create(k->be, cfg, q, &k->ctx));
    size_t rows = k->nseq_local * q->seq_len, H = (size_t)cfg->hidden;
    if (!q->nseq) return QD_OK;
    QD_CHECK(qd_buf_alloc(k->be, rows * H, &k->in));
    QD_CHECK(qd_buf_alloc(k->be, rows * H, &k->out));
    if (rank == 0 || k->dp) { /* data-parallel: every rank embeds its own sequences */
        QD_CHECK(qd_model_head_load(k->be, k->model, 0, &k->head));
        k->have_head = 1;
    }
    if (!k->dp && o->schedule == QD_SCHED_OVERLAP && rank < size - 1) {
        QD_CHECK(qd_fwd_create(k->be, cfg, q->seq_len, micro, &k->fp_fwd));
        QD_CHECK(qd_buf_alloc(k->be, micro * q->seq_len * H, &k->fp_buf));
    }
    return QD_OK;
}

qd_status qd_quantize_run(const qd_run_opts *o) {
    double t0 = qd_clock_s();
    int rank = qd_mpi_rank(), size = qd_mpi_size();
    qd_model_cfg cfg;
    qd_plan *plan = calloc(1, sizeof *plan);
    if (!plan) return qd_fail(QD_ERR_NOMEM, "quantize: out of memory");
    qd_run k = {.o = o, .cfg = &cfg};
    qd_fingerprint fpr = {0};
    qd_transport *prev = NULL, *next = NULL;
    qd_mpi_group *group = NULL; /* the ranks of this rank's pipeline stage (NULL: one stage, every rank) */
    qd_collective coll = {0};   /* data-parallel: the stage's reductions (MPI, then NCCL between GPUs) */
    int coll_nccl = 0;
    qd_progress *prog = NULL;
    int32_t *ids = NULL;
    char sha[65], staging[4096], meta[4200], be_name[64];
    qd_backend_spec be_spec;
    int failed_block = -1, in_pipeline = 0, staging_existed = 1;
    qd_status st;

    QD_CHECK_GOTO(qd_run_open_model(o->model_dir, &k.model), st, fail);
    cfg = *qd_model_cfg_of(k.model);
    /* the dtype the export stores scales in: F16, the model's (compressed-tensors), F32 (fake: the
     * --scale-dtype check below then holds alone, as for every format) */
    k.store_dt = strcmp(o->format, "compressed-tensors") == 0 ? cfg.dtype
               : strcmp(o->format, "fake") == 0              ? QD_DT_F32
                                                             : QD_DT_F16;
    QD_CHECK_GOTO(qd_mpi_agree(rank == 0 ? qd_run_preflight(o, k.model) : QD_OK), st, fail);
    if (cfg.quantized) {
        st = qd_fail(QD_ERR_UNSUPPORTED, "%s: the model is already quantized (%s)", o->model_dir, cfg.quant_method);
        goto fail;
    }
    k.dp = o->parallel == QD_PAR_DATA; /* the data-parallel layout (run-dp.c) unless asked otherwise */
    /* the 2-D layout: stage s is ranks [s*per, (s+1)*per) (the CLI checked that S divides P) */
    k.nstages = k.dp && o->pipeline_stages > 1 ? o->pipeline_stages : 1;
    int per = size / k.nstages;
    k.pstage = rank / per;
    QD_CHECK_GOTO(k.dp ? qd_run_plan_dp(k.model, k.nstages, plan) : qd_run_plan(k.model, size, plan), st, fail);
    qd_run_opts ro = *o; /* every rank now knows the calibration */
    ro.parallel = k.dp ? QD_PAR_DATA : QD_PAR_PIPELINE;
    QD_CHECK_GOTO(qd_run_broadcast_calib(o, &ids, sha, &ro.q.nseq, &ro.q.seq_len), st, fail);
    ro.calib_sha256 = sha[0] ? sha : NULL;
    k.o = &ro;
    k.ids = ids;
    if (o->staging_dir) snprintf(staging, sizeof staging, "%s", o->staging_dir);
    else snprintf(staging, sizeof staging, "%s.qdist-staging", o->output_dir);
    QD_CHECK_GOTO(qd_mpi_agree(rank == 0 ? qd_run_check_space(&ro, k.model, staging) : QD_OK), st, fail);
    /* a rank-local failure is agreed on at once: the other ranks are about to wait in a collective */
    QD_CHECK_GOTO(qd_mpi_agree(qd_run_fingerprint(&ro, k.model, plan, &fpr)), st, fail);
    staging_existed = qd_path_exists(staging) && !qd_dir_is_empty(staging);
    QD_CHECK_GOTO(qd_run_open_staging(&ro, staging, &fpr, &k.stage), st, fail);
    QD_CHECK_GOTO(qd_mpi_agree(rank == 0 ? qd_run_note_resumed(&k) : QD_OK), st, fail);
    /* rank 0 plans the export now and writes each block into its shards as it finishes */
    QD_CHECK_GOTO(qd_mpi_agree(rank == 0 ? qd_run_stream_begin(&k, staging) : QD_OK), st, fail);

    /* the collectives of the device mapping while every rank is still healthy, then what each rank
     * allocates on its own, agreed on before the pipeline's first receive */
    struct qd_transport_probe to_prev, to_next;
    QD_CHECK_GOTO(qd_run_devices(&o->backend, &be_spec, &k.dev_share, k.dp ? per : 1, &to_prev, &to_next), st, fail);
    if (k.nstages > 1) QD_CHECK_GOTO(qd_mpi_agree(qd_mpi_group_split(k.pstage, &group)), st, fail);
    qd_backend_spec_name(&be_spec, be_name, sizeof be_name);
    size_t rows = ro.q.nseq * ro.q.seq_len;
    /* this rank's share of the sequences, whole chunks: local rank i of every stage owns the same share */
    qd_collective_mpi(group, &coll);
    k.coll = &coll;
    k.seq0 = 0, k.nseq_local = ro.q.nseq;
    if (k.dp) {
        qd_collective_share(ro.q.nseq, qd_quantize_chunk_seqs(&ro.q), coll.rank, coll.size, &k.seq0, &k.nseq_local);
        ro.q.coll = &coll, ro.q.seq_first = k.seq0, ro.q.seq_count = k.nseq_local;
    }
    size_t micro = o->micro_batch ? o->micro_batch : 8;
    if (micro > ro.q.nseq && ro.q.nseq) micro = ro.q.nseq;
    QD_CHECK_GOTO(qd_mpi_agree(open_rank(&k, &ro.q, &be_spec, micro)), st, fail);
    QD_CHECK_GOTO(qd_run_collectives(&k, group, &be_spec, &coll, &coll_nccl), st, fail);
    /* pipeline: to rank -/+ 1; data-parallel stages: to the same local rank of the stage before / after */
    int has_prev = k.dp ? k.pstage > 0 : rank > 0, has_next = k.dp ? k.pstage < k.nstages - 1 : rank < size - 1;
    st = has_prev ? qd_transport_select(&to_prev, &prev) : QD_OK;
    if (st == QD_OK && has_next) st = qd_transport_select(&to_next, &next);
    if (st == QD_OK && rank == 0) {
        char layout[64];
        if (k.nstages > 1) snprintf(layout, sizeof layout, "data-parallel in %d pipeline stages", k.nstages);
        else snprintf(layout, sizeof layout, "%s", k.dp ? (coll_nccl ? "data-parallel, NCCL reductions" : "data-parallel")
                                                   : o->schedule == QD_SCHED_EXACT ? "pipeline, exact schedule"
                                                                                   : "pipeline, overlap schedule");
        qd_info("quantize: %d blocks over %d rank%s (%s, backend %s), staging %s", cfg.nlayers, size,
                size > 1 ? "s" : "", layout, be_name, staging);
        st = qd_progress_start(staging, plan, (double)rows, o->progress, &prog);
    }
    QD_CHECK_GOTO(qd_mpi_agree(st), st, fail);

    struct qd_block_worker wk;
    qd_run_worker(&k, micro, &wk);
    struct qd_pipeline_stats ps;
    in_pipeline = 1; /* from here a failing rank must end the job: its neighbours may be waiting on it */
    memset(&ps, 0, sizeof ps);
    st = k.dp ? qd_run_dp_blocks(&k, plan, &wk, prev, next, &ps, &failed_block)
              : qd_pipeline_run(plan, rank, o->schedule, &wk, prev, next, &ps, &failed_block);
    if (st == QD_OK) st = qd_run_flush(&k); /* every block of this rank on disk before the report reads them */
    if (st != QD_OK) goto fail;
    k.t.stage_write_s = qd_stage_writer_busy_s(k.writer);
    k.t.wait_s = ps.wait_s;
    k.t.quantized = ps.quantized;
    k.t.replayed = ps.replayed;
    k.t.total_s = qd_clock_s() - t0;
    qd_run_sample_mem(&k);
    qd_phase_totals(k.be, k.t.phase);

    /* every rank's timings to rank 0, then the report and the export */
    qd_run_times *all = calloc((size_t)size, sizeof *all);
    if (!all) {
        st = qd_fail(QD_ERR_NOMEM, "quantize: out of memory");
        goto fail;
    }
    st = qd_mpi_gather(&k.t, sizeof k.t, all);
    if (st != QD_OK) {
        free(all);
        goto fail;
    }
    double t_staged = qd_clock_s(); /* every rank's blocks are staged: the export tail starts here */
    qd_qrecord *recs = NULL;
    size_t nrecs = 0;
    st = qd_run_gather_records(&k, &recs, &nrecs);
    if (st != QD_OK) {
        free(all);
        goto fail;
    }
    qd_progress_stop(prog);
    prog = NULL;
    if (rank == 0) {
        st = qd_path_join(meta, sizeof meta, staging, "meta");
        if (st == QD_OK) st = qd_run_prepare_meta(o->model_dir, meta);
        double tw = qd_clock_s(), te = 0;
        cJSON *report = NULL;
        if (st == QD_OK) st = qd_run_build_report(&ro, k.stage, cfg.nlayers, k.resumed, plan, all, recs, nrecs,
                                                  qd_clock_s() - t0, &report);
        if (st == QD_OK) st = qd_run_save_report(report, meta);
        double tr = qd_clock_s() - tw;
        int streamed = 0;
        if (st == QD_OK && qd_param_str(QD_PARAM_INJECT_KILL_EXPORT)) raise(SIGKILL);
        if (st == QD_OK) {
            st = qd_run_stream_finish(&k, staging, meta, &streamed);
            /* every block is staged (a held-back last block now): say how to export them without
             * quantizing again (a plain rerun, --overwrite included, refuses the non-empty staging) */
            if (st != QD_OK && qd_run_stage_tail(&k, 1) == QD_OK)
                qd_warn("quantize: all %d blocks stay staged in %s: rerun with --resume (same model, settings and "
                        "recipe; --format may change) to export them without quantizing again, or remove %s to "
                        "start over", cfg.nlayers, staging, staging);
        }
        te = qd_clock_s() - tw - tr;
        if (st == QD_OK) qd_run_stream_report(report, qd_clock_s() - t_staged, streamed, cfg.nlayers);
        if (st == QD_OK) st = qd_run_finish_report(report, tr, te, qd_clock_s() - t0, o->output_dir);
        cJSON_Delete(report);
        if (st == QD_OK) {
            qd_info("quantize: %d blocks (%d quantized now, %d resumed from staging) in %.1f s -> %s", cfg.nlayers,
                    cfg.nlayers - k.nresumed, k.nresumed, qd_clock_s() - t0, o->output_dir);
            qd_run_stage_tail(&k, 0); /* committed: a held-back last block is not staged */
            if (!o->keep_staging) st = qd_stage_remove(staging); /* only what qdist wrote there */
        }
    }
    free(all);
    free(recs);
    in_pipeline = 0; /* rank 0's export failure is agreed on below: every rank exits cleanly */
    st = qd_mpi_agree(st);

fail:
    qd_run_stage_tail(&k, st != QD_OK); /* a held-back last block stays for --resume after a failure */
    qd_progress_stop(prog);
    qd_run_stream_abort(&k); /* before a fatal end too: no partial output is left behind */
    if (st != QD_OK && in_pipeline) qd_mpi_fatal(st, failed_block);
    qd_stage_writer_stop(k.writer); /* before the staging closes: a write may still be in flight */
    k.writer = NULL;
    /* a run that failed before staging anything leaves no staging directory behind to trip --resume */
    if (st != QD_OK && rank == 0 && k.stage && !staging_existed) {
        int64_t *blocks = NULL;
        size_t nb = 1;
        if (qd_stage_list(k.stage, &blocks, &nb) == QD_OK && nb == 0) {
            qd_stage_remove(staging); /* still locked: only what qdist wrote there */
            qd_stage_close(k.stage);
            k.stage = NULL;
        }
        free(blocks);
    }
    qd_transport_free(prev);
    qd_transport_free(next);
    qd_collective_nccl_close(&coll); /* before the backend: the communicator lives on its device */
    qd_mpi_group_free(group);
    qd_buf_free(k.in);
    qd_buf_free(k.out);
    qd_buf_free(k.fp_buf);
    qd_fwd_free(k.fp_fwd);
    if (k.have_head) qd_head_free(&k.head);
    qd_qctx_free(k.ctx);
    qd_model_close(k.model);
    if (k.be) qd_be_free(k.be);
    qd_stage_close(k.stage);
    qd_fingerprint_free(&fpr);
    free(k.recs);
    free(k.resumed);
    free(ids);
    free(plan);
    return st;
}
