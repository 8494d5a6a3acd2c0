/* SPDX-License-Identifier: MIT
 * run-internal.h - what the files of one quantization run share (mpi/run*.c), not for other callers:
 * the run's state (qd_run, one per rank), the per-rank timings, the module records the report is built
 * from, and each phase's entry points. The lifecycle that calls them in order is mpi/run.c.
 */
#ifndef QD_RUN_INTERNAL_H
#define QD_RUN_INTERNAL_H

#include <stdint.h>
#include <cjson/cJSON.h>

#include "qd-bootstrap.h"
#include "qd-clock.h"
#include "qd-collective.h"
#include "qd-h5stage.h"
#include "qd-model-ckpt.h"
#include "qd-phase.h"
#include "qd-quantize-run.h"
#include "qd-stage-writer.h"
#include "qd-transport.h"

/* Per-rank timings, gathered on rank 0 for the report (plain data: sent as bytes). */
typedef struct qd_run_times {
    double load_s, quant_s, replay_s, stage_s, fp_s, wait_s, total_s;
    double stage_write_s;       /* the writer thread's own time, overlapped with compute */
    int quantized, replayed;
    double phase[QD_PH_N];      /* seconds per phase (qd-phase.h) */
    double mem_budget;          /* bytes the run planned with (0: none given, host default rule) */
    double mem_reserved_peak;   /* the backend's own peak (0 on host backends) */
    double mem_used_peak;       /* device total - free, the most seen at block boundaries */
    int resident_path;          /* GPTQ: 1 when the one-forward resident path fits the budget */
} qd_run_times;

/* One rank's run: what the set-up opened and the worker uses; run.c frees it. */
typedef struct qd_run {
    const qd_run_opts *o;
    const qd_model_cfg *cfg;
    qd_backend_t be;
    qd_model *model;         /* this rank's model handle, opened with its data (run-setup.c) */
    qd_qctx *ctx;
    qd_stage *stage;
    qd_stage_writer *writer; /* stages finished blocks on its own thread */
    qd_qrecord *recs;        /* the modules this rank quantized in this run: kept on the rank that quantized
                              * them and gathered on rank 0, so the report reads back only resumed blocks */
    unsigned char *resumed;  /* rank 0: 1 for each block staged before the pipeline began (--resume), which
                              * the pipeline replays and the report reads from the staging */
    int nresumed;
    size_t nrecs, caprecs;
    qd_head head;
    int have_head;
    qd_buf_t in, out;        /* the worker's activations on the device */
    qd_fwd *fp_fwd;          /* overlap schedule's full-precision pass */
    size_t fp_seqs;
    qd_buf_t fp_buf;
    const int32_t *ids;
    int dev_share;           /* ranks of this node mapped to this rank's GPU (>= 1) */
    qd_dtype store_dt;       /* the dtype the export stores scales in (F16; compressed-tensors: the model's) */
    int dp;                  /* the data-parallel layout (run-dp.c) */
    int nstages, pstage;     /* data-parallel: the pipeline stages (--pipeline-stages) and this rank's */
    const qd_collective *coll; /* data-parallel: the reductions among the ranks of this rank's stage */
    size_t seq0, nseq_local; /* this rank's calibration sequences (pipeline: all of them) */
    struct qd_xstream *xs;   /* rank 0: the export written during the run (run-stream.c), or NULL */
    qd_staged_block *tail;   /* rank 0: the run's last block, held back from the staging (run-worker.c) */
    qd_run_times t;
} qd_run;

/* ---- set-up every rank does before the pipeline (run-setup.c) ---- */
/* Every rank opens the model once (config.json, the checkpoint's headers and data, checked against
 * each other): rank 0 first, so a bad model is reported once, then the others. Collective. */
qd_status qd_run_open_model(const char *dir, qd_model **out);
/* Rank 0 plans nparts block ranges (ranks, or stages) from the blocks' stored bytes; every rank gets it. */
qd_status qd_run_plan(const qd_model *m, int nparts, qd_plan *plan);
/* What a staging must match to be resumed: version, model, settings, recipe, calibration, schedule. */
qd_status qd_run_fingerprint(const qd_run_opts *o, const qd_model *m, const qd_plan *plan, qd_fingerprint *fpr);
/* Rank 0 creates or verifies the staging directory; the others attach to it. */
qd_status qd_run_open_staging(const qd_run_opts *o, const char *dir, const qd_fingerprint *fpr, qd_stage **out);
/* Rank 0's calibration shape, hash and ids to every rank (*ids_out: malloc'd, NULL without calibration). */
qd_status qd_run_broadcast_calib(const qd_run_opts *o, int32_t **ids_out, char sha[65], size_t *nseq,
                                 size_t *seq_len);
/* The device this rank computes on (*out; *share: this node's ranks on that GPU) and what the
 * transport probe needs of both neighbours, ranks rank - step and rank + step (pipeline: 1; stages:
 * the ranks per stage). Collective: called by every rank before any allocation. */
qd_status qd_run_devices(const qd_backend_spec *in, qd_backend_spec *out, int *share, int step,
                         struct qd_transport_probe *to_prev, struct qd_transport_probe *to_next);

/* ---- refusals before any work (run-checks.c) ---- */
/* Rank 0: --model, --output and the staging overlap, or a name is too long for qdist's suffixes. */
qd_status qd_run_check_paths(const qd_run_opts *o);
/* Every Linear of every layer gets its spec resolved (base, then the recipe's overrides); each must
 * suit the method (bits, a group size dividing the input features) and the format
 * (qd_export_check_module_scheme; awq: one group size per checkpoint). A refusal is one line naming
 * the module, the recipe override(s) that set its fields, and what the format or method accepts. */
qd_status qd_run_check_specs(const qd_model_cfg *cfg, const qd_qspec *base, const qd_recipe *recipe, const char *format);
/* Rank 0: the format cannot express the scheme, a group size does not divide a Linear, the output exists. */
qd_status qd_run_preflight(const qd_run_opts *o, const qd_model *m);
/* Rank 0: not enough disk for the staging and the export. */
qd_status qd_run_check_space(const qd_run_opts *o, const qd_model *m, const char *staging);
/* The memory budget and what stays resident (sets q->resident_max_bytes and k->t's memory fields). */
qd_status qd_run_plan_memory(qd_run *k, qd_quantize_opts *q);

/* ---- the per-block worker (run-worker.c) ---- */
/* The pipeline's callback table over k (qd-pipeline.h). */
void qd_run_worker(qd_run *k, size_t micro_batch, struct qd_block_worker *out);
/* Every block this rank quantized is on disk, but a held-back last block (k->tail). */
qd_status qd_run_flush(qd_run *k);
/* The held-back last block (k->tail, if any): write 1 stages it now (the export did not commit, or
 * reads the staging), 0 lets it go (the export committed; the staging is removed). */
qd_status qd_run_stage_tail(qd_run *k, int write);
/* The device memory in use now, into k->t's peaks. */
void qd_run_sample_mem(qd_run *k);

/* ---- the data-parallel layout (run-dp.c) ---- */
/* The plan of the data-parallel layout over `stages` pipeline stages (which divide the rank count,
 * checked by the caller): the ranks of stage s, [s*P/S, (s+1)*P/S), all pass the stage's contiguous
 * block range (qd_plan_make's balanced split over S); with one stage every rank passes every block. */
qd_status qd_run_plan_dp(const qd_model *m, int stages, qd_plan *plan);
/* 1 when this rank stages block b (data-parallel: local rank b % (P/S) of the block's stage;
 * pipeline: the rank that runs it). */
int qd_run_dp_stager(const qd_run *k, int block);
/* The stage's blocks in order on every rank of the stage, from this rank's embedded sequences (stage
 * 0) or from the activations of the same local rank of the stage before (prev), handing the output
 * of the stage's last block to the same local rank of the next stage (next); collective in a stage. */
qd_status qd_run_dp_blocks(qd_run *k, const qd_plan *plan, const struct qd_block_worker *w, qd_transport *prev,
                           qd_transport *next, struct qd_pipeline_stats *ps, int *failed_block);

/* ---- the report, on rank 0 (run-report.c) ---- */
/* The data-parallel reductions (--collectives): *coll, made over MPI for group, replaced by the NCCL
 * table when every rank of the stage has a GPU of its own (auto, nccl); *nccl = 1 then (close it with
 * qd_collective_nccl_close). Collective over every rank. */
qd_status qd_run_collectives(qd_run *k, qd_mpi_group *group, const qd_backend_spec *spec, qd_collective *coll,
                             int *nccl);
/* Rank 0, after the staging is open and before the pipeline: which blocks it already holds (k->resumed,
 * k->nresumed), by the test the pipeline uses to replay a block (qd_stage_has_block). */
qd_status qd_run_note_resumed(qd_run *k);
/* Every rank's module records to rank 0, in rank order (collective). */
qd_status qd_run_gather_records(const qd_run *k, qd_qrecord **out, size_t *nout);
/* The report as a cJSON tree (the caller saves it, and may update the totals after the export): the
 * modules of the blocks quantized in this run from recs, those of the resumed ones (resumed[b] = 1)
 * from the staging. */
qd_status qd_run_build_report(const qd_run_opts *o, const qd_stage *stage, int nblocks, const unsigned char *resumed,
                              const qd_plan *plan, const qd_run_times *all, const qd_qrecord *recs, size_t nrecs,
                              double wall, cJSON **out);
qd_status qd_run_save_report(cJSON *root, const char *dir);
/* After the export: rank 0's write phase and the wall time, into the copy in the output directory. */
qd_status qd_run_finish_report(cJSON *root, double report_s, double export_s, double wall, const char *out_dir);

/* ---- the export from the staging, on rank 0 (run-export.c) ---- */
/* The model's metadata files into the staging's meta directory (the export copies them on). */
qd_status qd_run_prepare_meta(const char *model_dir, const char *meta);
qd_status qd_run_export(const qd_run_opts *o, const qd_model *m, const char *staging, const char *meta);
/* The run's settings as the export's configs record them. */
struct qd_qrun;
void qd_run_qrun(const qd_run_opts *o, const qd_model_cfg *cfg, struct qd_qrun *run);
/* run-kv.c (--kv-cache): the run's kv settings into run; block b's k_scale / v_scale appended to sb's
 * tensors (room for two more) from the quantize context's maxima; nothing without --kv-cache */
void qd_run_qrun_kv(const qd_run_opts *o, const qd_model_cfg *cfg, struct qd_qrun *run);
qd_status qd_run_kv_stage(const qd_run *k, qd_staged_block *sb, int b);
/* --kv-cache refusals before work: the format, the calibration, MLA models */
qd_status qd_run_check_kv(const qd_model_cfg *cfg, const char *format, const char *calib_path);

/* ---- the export written during the run, on rank 0 (run-stream.c) ---- */
/* After the staging is open, before the pipeline: the export planned from the recipe (refusing what
 * the format cannot hold), the output directory begun, the tensors outside the blocks written in the
 * background. Nothing for the fake format or QD_EXPORT_STREAM=0 (the export then runs after the run). */
qd_status qd_run_stream_begin(qd_run *k, const char *staging);
/* A block this rank finished (run-worker.c): written into its shards while later blocks are computed;
 * release(b) once the export is done with it. Waits while two blocks are in flight. */
void qd_run_stream_block(qd_run *k, qd_staged_block *b, void (*release)(qd_staged_block *b));
/* After the report is saved in meta: the blocks not streamed, from the staging, and the output
 * committed (or qd_run_export when nothing was streamed or the data differed from the plan);
 * *streamed: blocks written from memory. */
qd_status qd_run_stream_finish(qd_run *k, const char *staging, const char *meta, int *streamed);
void qd_run_stream_abort(qd_run *k); /* removes the output in progress; nothing when there is none */
/* totals.export_tail_s / export_streamed_blocks in the report, and one info line */
void qd_run_stream_report(cJSON *report, double tail_s, int streamed, int nblocks);

#endif
