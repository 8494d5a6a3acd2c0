/* SPDX-License-Identifier: MIT
 * qdist quantize - RTN / GPTQ / AWQ over a model, writing a fake-quantised model (dequantised weights
 * plus the integer codes) and OUT/qdist_report.json. Settings: built-in defaults < --recipe top level
 * < command-line flags < the recipe's per-module overrides (docs/numerics.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-args.h"
#include "qd-backends.h"
#include "qd-calib.h"
#include "qd-cli-numerics.h"
#include "qd-check.h"
#include "qd-commands.h"
#include "qd-log.h"
#include "qd-bootstrap.h"
#include "qd-paths.h"
#include "qd-qbounds.h"
#include "qd-quantize-check.h"
#include "qd-st-writer.h"
#include "qd-quantize-model.h"
#include "qd-quantize-run.h"

typedef struct {
    const char *model, *output, *calib, *calib_mode, *method, *recipe, *format, *backend, *scale_dtype, *chat;
    int nsamples, seqlen, bits, group_size, sym, asym, act_order, static_groups, mse, true_seq, overwrite;
    int chunk_tokens;
    int seed;
    double damp, gpu_mem;
    int seen_calib_mode, seen_method, seen_bits, seen_gs, seen_sym, seen_asym, seen_act, seen_static, seen_mse;
    int seen_damp, seen_ts, seen_ns, seen_sl, seen_seed;
    /* the distributed run (mpi/qd-quantize-run.h) */
    const char *staging, *schedule, *progress, *numerics;
    int resume, keep_staging, quiet, micro_batch, seen_format, seen_scale_dtype;
    uint64_t max_shard;
} q_args;

/* Before any work: the model, the output and the staging must be three separate trees (the output's
 * replacement and the staging's clean-up remove files), and every name must fit qdist's suffixes. */
static qd_status check_paths(const q_args *a) {
    QD_CHECK(qd_paths_disjoint("--output", a->output, "--model", a->model));
    QD_CHECK(qd_outdir_check(a->output, a->overwrite));
    char dflt[4200];
    const char *staging = a->staging;
    if (!staging) {
        if (snprintf(dflt, sizeof dflt, "%s.qdist-staging", a->output) >= (int)sizeof dflt)
            return qd_fail(QD_ERR_USAGE, "--output %s: path too long", a->output);
        staging = dflt;
    }
    const char *flag = a->staging ? "--staging" : "the default staging (--output plus .qdist-staging)";
    QD_CHECK(qd_path_check_length(flag, staging, 32)); /* "/block-NNNNN.h5.tmp", "/meta/..." */
    QD_CHECK(qd_paths_disjoint(flag, staging, "--output", a->output));
    return qd_paths_disjoint(flag, staging, "--model", a->model);
}

static qd_status quantize_main(int argc, char **argv) {
    q_args a = {.method = "gptq", .format = "gptq", .schedule = "exact", .progress = "auto", .backend = "auto", .scale_dtype = "f16", .chat = "auto", .bits = 4,
                .group_size = 128, .true_seq = 1, .damp = 0.01, .nsamples = 128};
    const qd_opt opts[] = {
        {"model", QD_OPT_STR, &a.model, "DIR", "source model directory (Hugging Face format)", NULL, NULL},
        {"output", QD_OPT_STR, &a.output, "DIR", "output directory (written atomically)", NULL, NULL},
        {"calib", QD_OPT_STR, &a.calib, "FILE", "calibration data: .jsonl {text}/{messages}/[ids] or plain text", NULL, NULL},
        {"nsamples", QD_OPT_INT, &a.nsamples, "N", "calibration sequences (128)", QD_RANGE_NSAMPLES, &a.seen_ns},
        {"seqlen", QD_OPT_INT, &a.seqlen, "S", "tokens per sequence (gptq: min(2048, max pos); awq: 512)", QD_RANGE_SEQLEN, &a.seen_sl},
        {"seed", QD_OPT_INT, &a.seed, "X", "calibration sampling seed (0)", QD_RANGE_SEED, &a.seen_seed},
        {"chat-template", QD_OPT_CHOICE, &a.chat, "NAME",
         "template for .jsonl \"messages\" lines (default: matched from tokenizer_config.json's chat_template)",
         "auto|none|chatml|llama3|llama2", NULL},
        {"calib-mode", QD_OPT_CHOICE, &a.calib_mode, "MODE", "random windows (gptq default) or concatenated blocks (awq default)", "random|concat", &a.seen_calib_mode},
        {"method", QD_OPT_CHOICE, &a.method, "M", "quantization method", "rtn|gptq|awq", &a.seen_method},
        {"bits", QD_OPT_INT, &a.bits, "B", "bits per weight", QD_RANGE_BITS, &a.seen_bits},
        {"group-size", QD_OPT_INT, &a.group_size, "G", "columns per group: 32, 64, 128 or -1 (one group)", QD_RANGE_GROUP_SIZE, &a.seen_gs},
        {"sym", QD_OPT_FLAG, &a.sym, NULL, "symmetric (rtn/gptq default)", NULL, &a.seen_sym},
        {"asym", QD_OPT_FLAG, &a.asym, NULL, "asymmetric (awq default)", NULL, &a.seen_asym},
        {"act-order", QD_OPT_FLAG, &a.act_order, NULL, "GPTQ: columns in descending diag(H) order", NULL, &a.seen_act},
        {"static-groups", QD_OPT_FLAG, &a.static_groups, NULL, "GPTQ: group parameters from the original weight", NULL, &a.seen_static},
        {"damp", QD_OPT_DOUBLE, &a.damp, "D", "GPTQ damping fraction of mean(diag H) (0.01)", QD_RANGE_DAMP, &a.seen_damp},
        {"mse", QD_OPT_FLAG, &a.mse, NULL, "MSE clip grid search in the min-max quantizer", NULL, &a.seen_mse},
        {"true-sequential", QD_OPT_FLAG, &a.true_seq, NULL, "GPTQ: Hessians of [qkv]->[o]->[gate,up]->[down] in turn (default on)", NULL, &a.seen_ts},
        {"recipe", QD_OPT_STR, &a.recipe, "FILE", "JSON recipe with per-module overrides (configs/)", NULL, NULL},
        {"format", QD_OPT_CHOICE, &a.format, "F", "checkpoint format (awq runs default to awq; fake: dequantised weights + codes, one process)", "gptq|gptq_v2|awq|compressed-tensors|fake", &a.seen_format},
        {"staging", QD_OPT_STR, &a.staging, "DIR", "where finished blocks are staged (default OUTPUT.qdist-staging)", NULL, NULL},
        {"resume", QD_OPT_FLAG, &a.resume, NULL, "continue a run from its staging directory (same model, recipe, calibration)", NULL, NULL},
        {"keep-staging", QD_OPT_FLAG, &a.keep_staging, NULL, "keep the staging directory after a successful export", NULL, NULL},
        {"schedule", QD_OPT_CHOICE, &a.schedule, "S", "multi-rank schedule (exact: byte-identical to one rank)", "exact|overlap", NULL},
        {"progress", QD_OPT_CHOICE, &a.progress, "P", "progress display on rank 0", "auto|bar|lines|json|none", NULL},
        {"quiet", QD_OPT_FLAG, &a.quiet, NULL, "no progress or info lines", NULL, NULL},
        {"micro-batch", QD_OPT_INT, &a.micro_batch, "N", "sequences per activation transfer between ranks (8)", "1..65536", NULL},
        {"max-shard-size", QD_OPT_SIZE, &a.max_shard, "SIZE", "largest safetensors shard (5GB)", "1KB..1000TB", NULL},
        {"scale-dtype", QD_OPT_CHOICE, &a.scale_dtype, "T", "dtype the export stores scales in (default f16; compressed-tensors: the model's dtype)", "f16|bf16|f32", &a.seen_scale_dtype},
        {"overwrite", QD_OPT_FLAG, &a.overwrite, NULL, "replace an existing non-empty output directory", NULL, NULL},
        {"backend", QD_OPT_STR, &a.backend, "NAME", "compute backend: cpu, cuda, cuda:N, auto (default: cuda when a GPU answers, else cpu)", NULL, NULL},
        {"device", QD_OPT_STR, &a.backend, "NAME", "the same as --backend", NULL, NULL},
        {"numerics", QD_OPT_CHOICE, &a.numerics, "MODE", QD_NUMERICS_HELP, "fast|exact", NULL},
        {"chunk-tokens", QD_OPT_INT, &a.chunk_tokens, "N", "tokens per forward pass (8192)", "0..100000000", NULL},
        {"gpu-mem", QD_OPT_DOUBLE, &a.gpu_mem, "GIB", "memory budget per rank in GiB, deciding what stays resident (default: the GPU's free memory less a reserve; cpu: 6 GiB of GPTQ caches)", "0..1000000", NULL},
    };
    const char *pos_names[] = {NULL};
    const char *pos[1] = {NULL};
    qd_cmd_spec spec = {"quantize", "--model DIR --output DIR --calib FILE --method rtn|gptq|awq [options]",
                        "quantize a model with RTN, GPTQ or AWQ and export it (GPTQ, AWQ, compressed-tensors); runs under mpirun as one rank per GPU or machine", opts,
                        (int)(sizeof opts / sizeof opts[0]), pos_names, pos, 0};
    int help = 0;
    QD_CHECK(qd_args_parse(&spec, argc, argv, &help));
    if (help) return QD_OK;
    /* before anything logs: --quiet holds for every path, --format fake included */
    if (a.quiet) qd_log_set_level(QD_LOG_WARN);
    if (!a.model || !a.output) return qd_fail(QD_ERR_USAGE, "quantize: --model DIR and --output DIR are required");
    QD_CHECK(qd_mpi_agree(qd_mpi_rank() == 0 ? check_paths(&a) : QD_OK));
    if (a.seen_sym && a.seen_asym && a.sym && a.asym)
        return qd_fail(QD_ERR_USAGE, "quantize: --sym and --asym exclude each other");
    if (a.group_size == 0 || a.group_size < -1) return qd_fail(QD_ERR_USAGE, "quantize: --group-size must be > 0 or -1");
    if (a.bits != 2 && a.bits != 3 && a.bits != 4 && a.bits != 8)
        return qd_fail(QD_ERR_USAGE, "quantize: --bits must be 2, 3, 4 or 8");
    qd_backend_spec backend;
    QD_CHECK(qd_backend_spec_parse(a.backend, a.numerics, &backend));

    /* defaults < recipe < flags */
    qd_recipe *recipe = NULL;
    qd_qspec base = {.method = QD_METHOD_GPTQ, .bits = 4, .group_size = 128, .sym = 1, .damp = 0.01};
    qd_recipe_run run = {.true_sequential = 1, .nsamples = 128, .seqlen = 0, .seed = 0};
    int method_from_recipe_awq = 0;
    if (a.recipe) {
        QD_CHECK(qd_recipe_load(a.recipe, &recipe));
        qd_qspec probe = base;
        qd_recipe_apply_base(recipe, &probe, &run);
        method_from_recipe_awq = probe.method == QD_METHOD_AWQ;
        if (method_from_recipe_awq) base.sym = 0;
        qd_recipe_apply_base(recipe, &base, &run);
    }
    if (a.seen_method) {
        base.method = strcmp(a.method, "rtn") == 0 ? QD_METHOD_RTN : strcmp(a.method, "gptq") == 0 ? QD_METHOD_GPTQ
                                                                                                 : QD_METHOD_AWQ;
        if (base.method == QD_METHOD_AWQ && !method_from_recipe_awq) base.sym = 0; /* AWQ's zero point by default */
    }
    if (a.seen_bits) base.bits = a.bits;
    if (a.seen_gs) base.group_size = a.group_size;
    if (a.seen_sym) base.sym = a.sym;
    if (a.seen_asym) base.sym = !a.asym;
    if (a.seen_act) base.act_order = a.act_order;
    if (a.seen_static) base.static_groups = a.static_groups;
    if (a.seen_damp) base.damp = a.damp;
    if (a.seen_mse) base.mse = a.mse;
    if (a.seen_ts) run.true_sequential = a.true_seq;
    if (a.seen_ns) run.nsamples = a.nsamples;
    if (a.seen_sl) run.seqlen = a.seqlen;
    if (a.seen_seed) run.seed = a.seed;
    if (a.seen_calib_mode) snprintf(run.calib_mode, sizeof run.calib_mode, "%s", a.calib_mode);
    if (!run.calib_mode[0]) snprintf(run.calib_mode, sizeof run.calib_mode, "%s", base.method == QD_METHOD_AWQ ? "concat" : "random");
    if (run.lm_head) {
        qd_recipe_free(recipe);
        return qd_fail(QD_ERR_USAGE, "%s: \"lm_head\": true is not supported: qdist never quantizes lm_head (it "
                       "stays in the model's dtype); remove the key or set it false", a.recipe);
    }
    if (base.method == QD_METHOD_AWQ && base.bits != 4 && a.seen_format && strcmp(a.format, "fake") == 0)
        qd_warn("quantize: the awq format stores 4-bit weights only; export this %d-bit AWQ run with --format gptq "
                "or compressed-tensors", base.bits);

    qd_model_cfg cfg;
    qd_status st = qd_model_cfg_load(a.model, &cfg);
    if (st == QD_OK) st = qd_model_check_meta_files(a.model); /* a file the output cannot carry: before any work */
    if (st != QD_OK) {
        qd_recipe_free(recipe);
        return st;
    }
    if (!run.seqlen) {
        int dflt = base.method == QD_METHOD_AWQ ? 512 : 2048;
        run.seqlen = cfg.max_pos > 0 && cfg.max_pos < dflt ? cfg.max_pos : dflt;
    }
    qd_dtype sdt = strcmp(a.scale_dtype, "bf16") == 0 ? QD_DT_BF16 : strcmp(a.scale_dtype, "f32") == 0 ? QD_DT_F32 : QD_DT_F16;
    /* compressed-tensors stores scales in the model's dtype: round to it so the export is exact */
    if (!a.seen_scale_dtype && strcmp(a.format, "compressed-tensors") == 0 &&
        (cfg.dtype == QD_DT_BF16 || cfg.dtype == QD_DT_F32 || cfg.dtype == QD_DT_F16))
        sdt = cfg.dtype;
    qd_quantize_model_opts mo = {
        .model_dir = a.model, .output_dir = a.output, .overwrite = a.overwrite, .recipe_path = a.recipe,
        .q = {.base = base, .recipe = recipe, .true_sequential = run.true_sequential,
              .chunk_tokens = (size_t)a.chunk_tokens, .scale_dtype = sdt},
        .calib_path = a.calib, .calib_mode = run.calib_mode, .seed = (uint64_t)run.seed,
    };
    if (!a.seen_format && base.method == QD_METHOD_AWQ) a.format = "awq";
    /* every module's spec against the method and the format, before calibration or staging */
    st = qd_quantize_check_specs(&cfg, &base, recipe, a.format);
    if (st != QD_OK) {
        qd_recipe_free(recipe);
        return st;
    }
    int fake = strcmp(a.format, "fake") == 0;
    if (fake && qd_mpi_size() > 1) {
        qd_recipe_free(recipe);
        return qd_fail(QD_ERR_USAGE, "quantize: --format fake runs in one process; pick gptq, awq or compressed-tensors "
                                     "for %d ranks", qd_mpi_size());
    }
    /* calibration: every method but plain RTN needs it (RTN overrides inside a GPTQ/AWQ run too); in a
     * distributed run rank 0 reads it and the run broadcasts the ids */
    qd_calib_set set = {0};
    qd_tokenizer *tok = NULL;
    st = QD_OK;
    if (base.method != QD_METHOD_RTN) {
        if (!a.calib) {
            qd_recipe_free(recipe);
            return qd_fail(QD_ERR_USAGE, "quantize: --calib FILE is required for %s", qd_method_name(base.method));
        }
        if (qd_mpi_rank() == 0) {
            qd_calib_opts co = {.path = a.calib, .model_dir = a.model, .nsamples = run.nsamples, .seqlen = run.seqlen,
                                .seed = (uint64_t)run.seed,
                                .mode = strcmp(run.calib_mode, "concat") == 0 ? QD_CALIB_CONCAT : QD_CALIB_RANDOM,
                                .chat = QD_CHAT_AUTO};
            qd_chat_template_parse(a.chat, &co.chat);
            st = qd_tokenizer_load(a.model, &tok);
            if (st == QD_OK) st = qd_calib_load(&co, tok, &set);
            if (st == QD_OK) {
                mo.calib_ids = set.ids;
                mo.q.nseq = (size_t)set.nseq;
                mo.q.seq_len = (size_t)set.seqlen;
                mo.calib_sha256 = set.sha256_hex;
                qd_info("quantize: %s, %d x %d calibration tokens (%s, sha256 %.16s...)", qd_method_name(base.method),
                        set.nseq, set.seqlen, run.calib_mode, set.sha256_hex);
            }
        }
    } else if (a.calib) {
        qd_info("quantize: RTN does not use calibration data; --calib ignored");
    }
    QD_CHECK_GOTO(qd_mpi_agree(st), st, done);
    if (fake) {
        qd_backend_t be;
        QD_CHECK_GOTO(qd_backend_open(&backend, &be), st, done);
        st = qd_quantize_model(be, &mo);
        qd_be_free(be);
        goto done;
    }
    qd_progress_mode pm = QD_PROGRESS_AUTO;
    if (strcmp(a.progress, "bar") == 0) pm = QD_PROGRESS_BAR;
    if (strcmp(a.progress, "lines") == 0) pm = QD_PROGRESS_LINES;
    if (strcmp(a.progress, "json") == 0) pm = QD_PROGRESS_JSON;
    if (strcmp(a.progress, "none") == 0 || a.quiet) pm = QD_PROGRESS_QUIET;
    qd_run_opts ro = {.model_dir = a.model, .output_dir = a.output, .format = a.format, .overwrite = a.overwrite,
                      .max_shard_bytes = a.max_shard, .backend = backend, .staging_dir = a.staging,
                      .resume = a.resume, .keep_staging = a.keep_staging,
                      .schedule = strcmp(a.schedule, "overlap") == 0 ? QD_SCHED_OVERLAP : QD_SCHED_EXACT,
                      .progress = pm, .micro_batch = (size_t)a.micro_batch, .q = mo.q, .calib_ids = mo.calib_ids,
                      .calib_path = a.calib, .calib_mode = run.calib_mode, .calib_sha256 = mo.calib_sha256,
                      .seed = (uint64_t)run.seed, .recipe_path = a.recipe, .mem_budget_gib = a.gpu_mem};
    st = qd_quantize_run(&ro);
done:
    qd_calib_free(&set);
    qd_tokenizer_free(tok);
    qd_recipe_free(recipe);
    return st;
}

qd_status qd_cmd_quantize(int argc, char **argv) {
    /* a plain `qdist quantize` is a one-rank MPI job; under mpirun/srun every rank runs this */
    QD_CHECK(qd_mpi_start(&argc, &argv));
    qd_status st = quantize_main(argc, argv);
    qd_mpi_stop();
    return st;
}
