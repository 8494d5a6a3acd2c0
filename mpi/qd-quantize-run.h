/* SPDX-License-Identifier: MIT
 * qd-quantize-run.h - a quantization run over MPI ranks (one rank is the same code with no
 * neighbours): plan, calibration broadcast, staging with fingerprint and resume, the block pipeline,
 * progress, the run report with per-rank timings, and the export from staging (every format, fake
 * included). qd_quantize_command is what `qdist quantize` calls: the settings, then the run.
 *
 * Every rank calls qd_quantize_run with the same options. Rank 0 plans the block ranges from the
 * checkpoint headers and broadcasts them, broadcasts the calibration ids (only rank 0 needs them in
 * opts), creates or verifies the staging directory; the others attach to it. Each rank reads only
 * its own blocks. A failure on any rank is reported once by that rank, naming its rank, host and
 * block, and ends the whole job (MPI_Abort) so nobody waits forever; with one rank the status is
 * returned. Rank 0 writes the checkpoint while the blocks are quantized (each block it finishes goes
 * into its final shard; the others' and resumed ones from the staging after the last block; the fake
 * format all after the run), then the report, commits the output (atomic rename) and removes the
 * staging directory unless keep_staging; without keep_staging the run's last block, which rank 0's
 * export holds, is staged only if the export does not commit (docs/architecture.md, "Staging").
 */
#ifndef QD_QUANTIZE_RUN_H
#define QD_QUANTIZE_RUN_H

#include <stdint.h>

#include "qd-backends.h"
#include "qd-pipeline.h"
#include "qd-progress.h"
#include "qd-quantize.h"

/* How ranks share the work: data (default) - every rank owns a share of the calibration sequences and
 * passes every block (mpi/run-dp.c); pipeline - every rank owns a contiguous block range and the
 * activations flow from rank to rank (qd-pipeline.h, with its schedules). The data layout may be cut
 * into pipeline stages (--pipeline-stages S, the 2-D layout): stage s, ranks [s*P/S, (s+1)*P/S), owns a
 * contiguous block range and is a data-parallel group; activations cross the stage boundaries. */
typedef enum { QD_PAR_DATA = 0, QD_PAR_PIPELINE } qd_parallel;

/* The data-parallel reductions: auto - NCCL when every rank of a stage computes on a GPU of its own,
 * else MPI (host memory); nccl - NCCL or a usage error; mpi - always MPI. */
typedef enum { QD_COLL_AUTO = 0, QD_COLL_NCCL, QD_COLL_MPI } qd_collectives;

typedef struct qd_run_opts {
    const char *model_dir, *output_dir;
    const char *format;       /* gptq | gptq_v2 | awq | compressed-tensors | fake */
    int overwrite;
    uint64_t max_shard_bytes; /* 0: default */
    qd_backend_spec backend;  /* with no device named, ranks on one node get one GPU each (local rank) */
    const char *staging_dir;  /* NULL: "<output_dir>.qdist-staging" */
    int resume;
    int keep_staging;
    qd_parallel parallel;
    int pipeline_stages;      /* data-parallel: S stages of contiguous block ranges, P/S ranks each (0, 1: one) */
    qd_collectives collectives;
    qd_schedule schedule;     /* the pipeline layout's */
    qd_progress_mode progress;
    size_t micro_batch;       /* sequences per transfer (0: 8) */
    qd_quantize_opts q;       /* q.nseq / q.seq_len: calibration shape (rank 0's, broadcast) */
    const int32_t *calib_ids; /* rank 0: nseq * seq_len ids (NULL for RTN without calibration) */
    const char *calib_path, *calib_mode, *calib_sha256;
    uint64_t seed;
    const char *recipe_path;
    double mem_budget_gib;    /* --gpu-mem: memory the backend may hold (0: most of the free device memory;
                               * host backends: the driver's default rule) */
} qd_run_opts;

qd_status qd_quantize_run(const qd_run_opts *o);

/* What `qdist quantize` is given, before the run settles it (mpi/run-setup.c): every rank checks the
 * paths (rank 0), resolves the recipe and the flags (qd_recipe_apply_flags), checks every module's
 * spec against the method and the format, takes the defaults that depend on the model (seqlen from
 * max_position_embeddings, compressed-tensors' scale dtype, --math), and rank 0 loads the calibration;
 * then the run above. Every refusal comes before any work. */
typedef struct qd_run_params {
    qd_run_opts run;           /* passed on as given; run.q, run.calib_ids / calib_mode / calib_sha256 /
                                * seed are settled here (run.q.chunk_tokens is kept) */
    qd_recipe_flags flags;     /* over the recipe at run.recipe_path */
    const char *chat_template; /* calibration: auto | none | chatml | llama3 | llama2 */
    const char *math;          /* --math: auto | fp32 | tf32 | bf16 */
    const char *scale_dtype;   /* f16 | bf16 | f32; NULL: f16, compressed-tensors: the model's dtype */
    int format_given;          /* 0: an AWQ run's format is awq */
    const char *moe_flag;      /* "--moe-calibration all" / "--moe-min-tokens" when given (NULL: neither):
                                * a usage error on a model without experts */
} qd_run_params;

qd_status qd_quantize_command(const qd_run_params *p);

#endif
