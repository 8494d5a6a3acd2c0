/* SPDX-License-Identifier: MIT
 * qdist quantize - RTN / GPTQ / AWQ over a model, exported as a checkpoint (GPTQ, AWQ,
 * compressed-tensors) or a fake-quantised model (dequantised weights plus the integer codes), with
 * OUT/qdist_report.json. Settings: built-in defaults < --recipe top level
 * < command-line flags < the recipe's per-module overrides (docs/numerics.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-args.h"
#include "qd-backends.h"
#include "qd-cli-numerics.h"
#include "qd-check.h"
#include "qd-commands.h"
#include "qd-log.h"
#include "qd-bootstrap.h"
#include "qd-qbounds.h"
#include "qd-quantize-run.h"

/* The flags that are not one field of qd_run_params as they are (choices turned into enums, ints into
 * sizes, the backend name into its spec) */
typedef struct {
    const char *format, *backend, *numerics, *schedule, *parallel, *collectives, *progress, *moe_calibration, *expert_parallel;
    const char *smoothquant, *kv_cache;
    int quiet, stages, micro_batch, chunk_tokens, moe_min_tokens, seen_format, seen_scale_dtype, seen_moe_min_tokens;
} q_args;

static qd_status quantize_main(int argc, char **argv) {
    qd_run_params p = {.flags = {.method = "gptq", .bits = 4, .group_size = 128, .true_sequential = 1, .damp = 0.01,
                                 .nsamples = 128},
                       .chat_template = "auto", .math = "auto", .scale_dtype = "f16"};
    q_args a = {.format = "gptq", .schedule = "exact", .parallel = "data", .collectives = "auto", .progress = "auto", .backend = "auto",
              .stages = 1, .moe_calibration = "routed", .moe_min_tokens = 16,
              .expert_parallel = "auto", .kv_cache = "none"};
    qd_run_opts *ro = &p.run;
    qd_recipe_flags *f = &p.flags;
    const qd_opt opts[] = {
        {"model", QD_OPT_STR, &ro->model_dir, "DIR", "source model directory (Hugging Face format)", NULL, NULL},
        {"output", QD_OPT_STR, &ro->output_dir, "DIR", "output directory (written atomically)", NULL, NULL},
        {"calib", QD_OPT_STR, &ro->calib_path, "FILE", "calibration data: .jsonl {text}/{messages}/[ids] or plain text", NULL, NULL},
        {"nsamples", QD_OPT_INT, &f->nsamples, "N", "calibration sequences (128)", QD_RANGE_NSAMPLES, &f->seen_nsamples},
        {"seqlen", QD_OPT_INT, &f->seqlen, "S", "tokens per sequence (gptq: min(2048, max pos); awq: 512)", QD_RANGE_SEQLEN, &f->seen_seqlen},
        {"seed", QD_OPT_INT, &f->seed, "X", "calibration sampling seed (0)", QD_RANGE_SEED, &f->seen_seed},
        {"chat-template", QD_OPT_CHOICE, &p.chat_template, "NAME",
         "template for .jsonl \"messages\" lines (default: matched from tokenizer_config.json's chat_template)",
         "auto|none|chatml|llama3|llama2", NULL},
        {"calib-mode", QD_OPT_CHOICE, &f->calib_mode, "MODE", "random windows (gptq default) or concatenated blocks (awq default)", "random|concat", &f->seen_calib_mode},
        {"method", QD_OPT_CHOICE, &f->method, "M", "quantization method (default gptq; an fp8 or fp4 --scheme is rtn unless --method gptq is given; awq takes wna16 only)", "rtn|gptq|awq", &f->seen_method},
        {"scheme", QD_OPT_CHOICE, &f->scheme, "S", "weight/activation scheme (default wna16: integer weights only, --bits; fp8-dynamic, fp8-block: e4m3 weights per row / per 128 x 128 block, dynamic fp8 activations; w8a8-int8: int8 per-channel weights, dynamic int8 activations; fp8-static: e4m3 per-tensor weights, static per-tensor fp8 activation scales from --calib (llm-compressor's FP8); nvfp4a16: e2m1 weights, e4m3 scales per 16 and an fp32 global scale, mxfp4: e2m1 weights, e8m0 scales per 32, both weight-only; mxfp4-w4a4: mxfp4 weights, dynamic mxfp4 activations; nvfp4: nvfp4a16 weights, nvfp4 activations with a static global scale per Linear from --calib (llm-compressor's NVFP4); the fp8 and fp4 schemes are quantized by rtn unless --method gptq asks for GPTQ with the same scales, w8a8-int8 by gptq or rtn, none by awq; non-wna16 schemes default to --format compressed-tensors; docs/formats.md)", QD_SCHEME_CHOICES, &f->seen_scheme},
        {"bits", QD_OPT_INT, &f->bits, "B", "bits per weight", QD_RANGE_BITS, &f->seen_bits},
        {"group-size", QD_OPT_INT, &f->group_size, "G", "columns per group: 32, 64, 128 or -1 (one group)", QD_RANGE_GROUP_SIZE, &f->seen_group_size},
        {"sym", QD_OPT_FLAG, &f->sym, NULL, "symmetric (rtn/gptq default)", NULL, &f->seen_sym},
        {"asym", QD_OPT_FLAG, &f->asym, NULL, "asymmetric (awq default)", NULL, &f->seen_asym},
        {"act-order", QD_OPT_FLAG, &f->act_order, NULL, "GPTQ: columns in descending diag(H) order", NULL, &f->seen_act_order},
        {"static-groups", QD_OPT_FLAG, &f->static_groups, NULL, "GPTQ: group parameters from the original weight", NULL, &f->seen_static_groups},
        {"damp", QD_OPT_DOUBLE, &f->damp, "D", "GPTQ damping fraction of mean(diag H) (0.01)", QD_RANGE_DAMP, &f->seen_damp},
        {"mse", QD_OPT_FLAG, &f->mse, NULL, "MSE clip grid search in the min-max quantizer", NULL, &f->seen_mse},
        {"true-sequential", QD_OPT_FLAG, &f->true_sequential, NULL, "GPTQ: Hessians of [qkv]->[o]->[gate,up]->[down] in turn (default on)", NULL, &f->seen_true_sequential},
        {"moe-calibration", QD_OPT_CHOICE, &a.moe_calibration, "M", "MoE models, GPTQ and AWQ: each expert's Hessians (AWQ: statistics) from the tokens the router sends it (routed, default) or from every token (all); the output always uses the model's routing; all is refused on a dense model and with rtn", "routed|all", NULL},
        {"expert-parallel", QD_OPT_CHOICE, &a.expert_parallel, "E", "MoE, GPTQ, data layout with several ranks: each expert solved whole by one rank, its routed rows sent there, instead of every rank's Hessians of every expert all-reduced (auto: when that moves fewer bytes; on: refused with one rank, a dense model or rtn/awq; the checkpoint is the same; docs/architecture.md)", "auto|on|off", NULL},
        {"moe-min-tokens", QD_OPT_INT, &a.moe_min_tokens, "N", "MoE, routed: an expert with fewer routed tokens takes the all-token Hessians or AWQ statistics (listed as its fallback in the report; default 16; refused on a dense model and with rtn)", "0..1000000000", &a.seen_moe_min_tokens},
        {"smoothquant", QD_OPT_STR, &a.smoothquant, "A", "SmoothQuant before GPTQ/RTN, for the W8A8 schemes: per block, input_layernorm -> q/k/v and post_attention_layernorm -> the MLP's input Linears (MoE: router and experts too) smoothed with strength A in [0, 1] (llm-compressor's smoothing_strength; 0.5 is its default), or auto: A searched per block and norm over 0, 0.05, ..., 1 against int8 W8A8 output error; needs --calib (docs/numerics.md)", NULL, NULL},
        {"kv-cache", QD_OPT_CHOICE, &a.kv_cache, "K", "fp8 KV-cache scales calibrated in the same run over --calib (fp8: one k_scale/v_scale per layer; fp8-head: one per KV head), amax/448 of the post-rope keys and of the values as llm-compressor writes them; the format defaults to and must be compressed-tensors; not for MLA models (docs/formats.md)", "none|fp8|fp8-head", NULL},
        {"recipe", QD_OPT_STR, &ro->recipe_path, "FILE", "JSON recipe with per-module overrides (configs/)", NULL, NULL},
        {"format", QD_OPT_CHOICE, &a.format, "F", "checkpoint format (awq runs default to awq; fake: dequantised weights + codes, what qdist export reads)", "gptq|gptq_v2|awq|compressed-tensors|fake", &a.seen_format},
        {"staging", QD_OPT_STR, &ro->staging_dir, "DIR", "where finished blocks are staged (default OUTPUT.qdist-staging)", NULL, NULL},
        {"resume", QD_OPT_FLAG, &ro->resume, NULL, "continue a run from its staging directory (same model, recipe, calibration)", NULL, NULL},
        {"keep-staging", QD_OPT_FLAG, &ro->keep_staging, NULL, "keep the staging directory after a successful export", NULL, NULL},
        {"parallel", QD_OPT_CHOICE, &a.parallel, "L", "multi-rank layout (data: every rank a share of the calibration sequences and every block; pipeline: every rank a range of blocks; docs/architecture.md)", "data|pipeline", NULL},
        {"pipeline-stages", QD_OPT_INT, &a.stages, "S", "data layout cut into S pipeline stages of contiguous blocks, each a data-parallel group of P/S ranks (S divides P; 1: one stage; several nodes: S = nodes; docs/architecture.md)", "1..1024", NULL},
        {"collectives", QD_OPT_CHOICE, &a.collectives, "C", "data layout's reductions (auto: NCCL when every rank has a GPU of its own, else MPI through host memory)", "auto|nccl|mpi", NULL},
        {"schedule", QD_OPT_CHOICE, &a.schedule, "S", "pipeline layout's schedule (exact: byte-identical to one rank)", "exact|overlap", NULL},
        {"progress", QD_OPT_CHOICE, &a.progress, "P", "progress display on rank 0", "auto|bar|lines|json|none", NULL},
        {"quiet", QD_OPT_FLAG, &a.quiet, NULL, "no progress or info lines", NULL, NULL},
        {"micro-batch", QD_OPT_INT, &a.micro_batch, "N", "sequences per activation transfer between ranks (8)", "1..65536", NULL},
        {"max-shard-size", QD_OPT_SIZE, &ro->max_shard_bytes, "SIZE", "largest safetensors shard (5GB)", "1KB..1000TB", NULL},
        {"scale-dtype", QD_OPT_CHOICE, &p.scale_dtype, "T", "dtype the export stores scales in; the codes are rounded against it (default f16; compressed-tensors: the model's dtype)", "f16|bf16|f32", &a.seen_scale_dtype},
        {"overwrite", QD_OPT_FLAG, &ro->overwrite, NULL, "replace an existing non-empty output directory", NULL, NULL},
        {"backend", QD_OPT_STR, &a.backend, "NAME", "compute backend: cpu, cuda, cuda:N, auto (default: cuda when a GPU answers, else cpu)", NULL, NULL},
        {"device", QD_OPT_STR, &a.backend, "NAME", "the same as --backend", NULL, NULL},
        {"numerics", QD_OPT_CHOICE, &a.numerics, "MODE", QD_NUMERICS_HELP, "fast|exact", NULL},
        {"math", QD_OPT_CHOICE, &p.math, "M", QD_MATH_HELP, "auto|fp32|tf32|bf16", NULL},
        {"chunk-tokens", QD_OPT_INT, &a.chunk_tokens, "N", "tokens per forward pass (8192)", "0..100000000", NULL},
        {"gpu-mem", QD_OPT_DOUBLE, &ro->mem_budget_gib, "GIB", "memory budget per rank in GiB, deciding what stays resident (default: the GPU's free memory less a reserve; cpu: 6 GiB of GPTQ caches)", "0..1000000", NULL},
    };
    const char *pos_names[] = {NULL};
    const char *pos[1] = {NULL};
    qd_cmd_spec spec = {"quantize", "--model DIR --output DIR --calib FILE --method rtn|gptq|awq [options]",
                        "quantize a model with RTN, GPTQ or AWQ and export it (GPTQ, AWQ, compressed-tensors, fake); runs under mpirun as one rank per GPU or machine", opts,
                        (int)(sizeof opts / sizeof opts[0]), pos_names, pos, 0};
    int help = 0;
    QD_CHECK(qd_args_parse(&spec, argc, argv, &help));
    if (help) return QD_OK;
    /* before anything logs: --quiet holds for every path, --format fake included */
    if (a.quiet) qd_log_set_level(QD_LOG_WARN);
    if (!ro->model_dir || !ro->output_dir)
        return qd_fail(QD_ERR_USAGE, "quantize: --model DIR and --output DIR are required");
    if (f->seen_sym && f->seen_asym && f->sym && f->asym)
        return qd_fail(QD_ERR_USAGE, "quantize: --sym and --asym exclude each other");
    if (f->group_size == 0 || f->group_size < -1)
        return qd_fail(QD_ERR_USAGE, "quantize: --group-size must be > 0 or -1");
    if (f->bits != 2 && f->bits != 3 && f->bits != 4 && f->bits != 8)
        return qd_fail(QD_ERR_USAGE, "quantize: --bits must be 2, 3, 4 or 8");
    QD_CHECK(qd_backend_spec_parse(a.backend, a.numerics, &ro->backend));
    ro->format = a.format;
    p.format_given = a.seen_format;
    if (!a.seen_scale_dtype) p.scale_dtype = NULL;
    ro->schedule = strcmp(a.schedule, "overlap") == 0 ? QD_SCHED_OVERLAP : QD_SCHED_EXACT;
    ro->parallel = strcmp(a.parallel, "pipeline") == 0 ? QD_PAR_PIPELINE : QD_PAR_DATA;
    ro->collectives = strcmp(a.collectives, "nccl") == 0 ? QD_COLL_NCCL
                    : strcmp(a.collectives, "mpi") == 0  ? QD_COLL_MPI
                                                         : QD_COLL_AUTO;
    if (ro->collectives == QD_COLL_NCCL && ro->backend.kind == QD_BACKEND_CPU)
        return qd_fail(QD_ERR_USAGE, "--collectives nccl reduces on GPUs: drop --backend cpu or use --collectives mpi");
    if (ro->collectives != QD_COLL_AUTO && ro->parallel == QD_PAR_PIPELINE)
        return qd_fail(QD_ERR_USAGE, "--collectives %s chooses the data layout's reductions: drop --parallel pipeline",
                       a.collectives);
    if (a.stages > 1 && ro->schedule == QD_SCHED_OVERLAP)
        return qd_fail(QD_ERR_USAGE, "--schedule overlap is not available with --pipeline-stages > 1: the stages run the "
                                     "exact schedule (drop --schedule overlap)");
    if (a.stages > 1 && ro->parallel == QD_PAR_PIPELINE)
        return qd_fail(QD_ERR_USAGE, "--pipeline-stages cuts the data layout into stages: drop --parallel pipeline");
    /* every rank sees the same sizes: rank 0 alone says so, in one line */
    if (qd_mpi_size() % a.stages)
        return qd_mpi_rank() == 0 ? qd_fail(QD_ERR_USAGE, "--pipeline-stages %d does not divide the %d ranks: every "
                                                          "stage needs the same number of ranks", a.stages, qd_mpi_size())
                                  : QD_ERR_USAGE;
    ro->pipeline_stages = a.stages;
    if (ro->schedule == QD_SCHED_OVERLAP && ro->parallel == QD_PAR_DATA)
        return qd_fail(QD_ERR_USAGE, "--schedule overlap is a schedule of the pipeline layout: add --parallel pipeline");
    ro->progress = a.quiet || strcmp(a.progress, "none") == 0 ? QD_PROGRESS_QUIET
                 : strcmp(a.progress, "bar") == 0             ? QD_PROGRESS_BAR
                 : strcmp(a.progress, "lines") == 0           ? QD_PROGRESS_LINES
                 : strcmp(a.progress, "json") == 0            ? QD_PROGRESS_JSON
                                                              : QD_PROGRESS_AUTO;
    ro->micro_batch = (size_t)a.micro_batch;
    ro->q.chunk_tokens = (size_t)a.chunk_tokens;
    ro->q.moe_all = strcmp(a.moe_calibration, "all") == 0;
    ro->q.moe_min_tokens = (size_t)a.moe_min_tokens;
    /* the fallback it sets is what all gives every expert; a warning, not a refusal: a script looping over
     * both modes with one --moe-min-tokens runs as before */
    if (ro->q.moe_all && a.seen_moe_min_tokens && qd_mpi_rank() == 0)
        qd_warn("quantize: --moe-min-tokens sets when a routed expert falls back to the all-token statistics, but "
                "--moe-calibration all gives every expert those, so it changes nothing");
    /* refused on a dense model and with RTN (mpi/run-setup.c): they would change nothing */
    p.moe_flag = ro->q.moe_all ? "--moe-calibration all" : a.seen_moe_min_tokens ? "--moe-min-tokens" : NULL;
    ro->q.expert_parallel = strcmp(a.expert_parallel, "on") == 0 ? 1 : strcmp(a.expert_parallel, "off") == 0 ? -1 : 0;
    if (ro->q.expert_parallel > 0 && ro->parallel == QD_PAR_PIPELINE)
        return qd_fail(QD_ERR_USAGE, "--expert-parallel on spreads experts over the data layout's ranks: drop "
                                     "--parallel pipeline");
    if (ro->q.expert_parallel > 0 && qd_mpi_size() / a.stages < 2)
        return qd_mpi_rank() == 0 ? qd_fail(QD_ERR_USAGE, "--expert-parallel on spreads experts over the data "
                                                          "layout's ranks, but this run has one rank%s: drop it or "
                                                          "run under mpirun -n N", a.stages > 1 ? " per stage" : "")
                                  : QD_ERR_USAGE;
    if (a.smoothquant) {
        char *end = NULL;
        /* a plain decimal: strtod alone also takes hex (0x1), leading blanks and values that underflow */
        int plain = strspn(a.smoothquant, "0123456789.eE+-") == strlen(a.smoothquant);
        errno = 0;
        double alpha = strcmp(a.smoothquant, "auto") == 0 ? 0.5 : strtod(a.smoothquant, &end);
        if (end && (!plain || errno == ERANGE || end == a.smoothquant || *end || !(alpha >= 0 && alpha <= 1)))
            return qd_fail(QD_ERR_USAGE, "--smoothquant: expected a strength in [0, 1] or auto, got '%s'", a.smoothquant);
        ro->q.smooth = end ? QD_SMOOTH_FIXED : QD_SMOOTH_AUTO;
        ro->q.smooth_alpha = alpha;
    }
    ro->q.kv_cache = strcmp(a.kv_cache, "fp8") == 0        ? QD_KV_FP8_TENSOR
                   : strcmp(a.kv_cache, "fp8-head") == 0 ? QD_KV_FP8_HEAD
                                                         : QD_KV_OFF;
    qd_log_set_alike(0);
    return qd_quantize_command(&p);
}

qd_status qd_cmd_quantize(int argc, char **argv) {
    /* a plain `qdist quantize` is a one-rank MPI job; under mpirun/srun every rank runs this */
    QD_CHECK(qd_mpi_start(&argc, &argv));
    qd_log_set_alike(1); /* until quantize_main hands over to the run: every rank parses the same argv */
    qd_status st = quantize_main(argc, argv);
    qd_log_set_alike(0);
    qd_mpi_stop();
    return st;
}
