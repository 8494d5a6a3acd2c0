/* SPDX-License-Identifier: MIT
 * run-setup.c - what every rank does before the pipeline: the command's settings (recipe and flags,
 * the model's defaults, the calibration load on rank 0), the plan, the staging fingerprint and
 * directory, the calibration broadcast, and the device and neighbour probes.
 */
#include "run-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-bootstrap.h"
#include "qd-calib.h"
#include "qd-check.h"
#include "qd-fs.h"
#include "qd-param.h"

qd_status qd_run_open_model(const char *dir, qd_model **out) {
    *out = NULL;
    int rank = qd_mpi_rank();
    QD_CHECK(qd_mpi_agree(rank == 0 ? qd_model_open(dir, 1, out) : QD_OK));
    qd_status st = qd_mpi_agree(rank != 0 ? qd_model_open(dir, 1, out) : QD_OK);
    if (st != QD_OK) {
        qd_model_close(*out);
        *out = NULL;
    }
    return st;
}

qd_status qd_run_plan(const qd_model *m, int nparts, qd_plan *plan) {
    qd_status st = QD_OK;
    if (qd_mpi_rank() == 0) {
        const int nb = qd_model_cfg_of(m)->nlayers;
        uint64_t *cost = calloc((size_t)nb + 1, sizeof *cost);
        if (!cost) st = qd_fail(QD_ERR_NOMEM, "plan: out of memory");
        for (int b = 0; st == QD_OK && b < nb; b++) cost[b] = qd_model_block_bytes(m, b);
        if (st == QD_OK) st = qd_plan_make(nb, cost, 0, 0, nparts, plan);
        free(cost);
    }
    QD_CHECK(qd_mpi_agree(st));
    return qd_mpi_bcast(plan, sizeof *plan);
}

qd_status qd_run_fingerprint(const qd_run_opts *o, const qd_model *m, const qd_plan *plan, qd_fingerprint *fpr) {
    const qd_qspec *s = &o->q.base;
    char buf[512];
    QD_CHECK(qd_fingerprint_add(fpr, "qdist_version", QD_VERSION));
    QD_CHECK(qd_fingerprint_add_model(fpr, qd_model_dir(m)));
    snprintf(buf, sizeof buf,
             "method=%s bits=%d group_size=%d sym=%d act_order=%d static_groups=%d damp=%.6g mse=%d "
             "true_sequential=%d scale_dtype=%s numerics=%s math=%s",
             qd_method_name(s->method), s->bits, s->group_size, s->sym, s->act_order, s->static_groups, s->damp,
             s->mse, o->q.true_sequential, qd_dtype_name(o->q.scale_dtype),
             /* fast and exact blocks differ in their bits: a resume must not mix them */
             o->backend.numerics == QD_NUMERICS_EXACT ? "exact" : "fast",
             /* so do the GPU's fp32/tf32/bf16 GEMMs (the CPU ignores it: a CPU run resumed on a GPU or
              * the other way keeps the same math as long as the flag and the checkpoint's dtype do) */
             qd_math_name(o->backend.math));
    QD_CHECK(qd_fingerprint_add(fpr, "settings", buf));
    /* integer codes chosen against the scale rounded to scale_dtype (kernels/qd-backend.h, qd_qcfg): a
     * staging written before that rule (no such field) is refused rather than resumed with mixed blocks */
    if (o->q.scale_dtype == QD_DT_F16 || o->q.scale_dtype == QD_DT_BF16)
        QD_CHECK(qd_fingerprint_add(fpr, "scale_rounding", "before-codes"));
    if (o->q.moe_model) { /* the experts' Hessians depend on them */
        snprintf(buf, sizeof buf, "moe_calibration=%s moe_min_tokens=%zu", o->q.moe_all ? "all" : "routed",
                 o->q.moe_min_tokens);
        QD_CHECK(qd_fingerprint_add(fpr, "moe", buf));
    }
    /* only when set, so that the fingerprints of wna16 stagings stay what they were */
    if (s->scheme != QD_SCHEME_WNA16) QD_CHECK(qd_fingerprint_add(fpr, "scheme", qd_scheme_name(s->scheme)));
    if (o->q.smooth) { /* only when on, likewise */
        snprintf(buf, sizeof buf, o->q.smooth == QD_SMOOTH_AUTO ? "auto" : "%.17g", o->q.smooth_alpha);
        QD_CHECK(qd_fingerprint_add(fpr, "smoothquant", buf));
    }
    if (o->q.kv_cache) /* the staged blocks hold k_scale / v_scale of this kind */
        QD_CHECK(qd_fingerprint_add(fpr, "kv_cache", o->q.kv_cache == QD_KV_FP8_HEAD ? "fp8-head" : "fp8"));
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
    if (o->parallel == QD_PAR_DATA) { /* exact numerics: the same bits for every rank count */
        QD_CHECK(qd_fingerprint_add(fpr, "schedule", "data"));
    } else if (o->schedule == QD_SCHED_OVERLAP) {
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
static qd_status neighbour_probes(const qd_backend_spec *be, int step, struct qd_transport_probe *to_prev,
                                  struct qd_transport_probe *to_next) {
    int rank = qd_mpi_rank(), size = qd_mpi_size(), lr, nlocal, node;
    int gpu = qd_backend_spec_is_gpu(be);
    struct qd_transport_probe p = {.rank = rank, .backend_is_gpu = gpu,
                                   .device_buffers = qd_pipeline_device_buffers()};
    *to_prev = *to_next = p;
    to_prev->peer = rank - step, to_next->peer = rank + step;
    if (size <= 1) return QD_OK;
    qd_mpi_node(&lr, &nlocal, &node);
    int mine[2] = {node, gpu ? (be->device == QD_DEVICE_ANY ? 0 : be->device) : -1};
    int *all = malloc((size_t)size * sizeof mine);
    if (!all) return qd_fail(QD_ERR_NOMEM, "quantize: out of memory");
    qd_status st = qd_mpi_allgather(mine, sizeof mine, all);
    int pv = rank - step, nx = rank + step;
    if (st == QD_OK && pv >= 0) to_prev->same_device = gpu && all[2 * pv] == node && all[2 * pv + 1] == mine[1];
    if (st == QD_OK && nx < size) to_next->same_device = gpu && all[2 * nx] == node && all[2 * nx + 1] == mine[1];
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

qd_status qd_run_devices(const qd_backend_spec *in, qd_backend_spec *out, int *share, int step,
                         struct qd_transport_probe *to_prev, struct qd_transport_probe *to_next) {
    map_device(in, out, share);
    return neighbour_probes(out, step, to_prev, to_next);
}

/* Rank 0 reads the calibration (every method but plain RTN needs it; RTN overrides inside a GPTQ/AWQ
 * run too) into *set; the run broadcasts the ids. */
static qd_status load_calib(const qd_run_params *p, const qd_model_cfg *cfg, const qd_qspec *base,
                            const qd_recipe_run *run, qd_calib_set *set) {
    const qd_run_opts *o = &p->run;
    if (base->method == QD_METHOD_RTN && !o->q.smooth && !qd_scheme_static_act(base->scheme) &&
        !o->q.kv_cache) { /* SmoothQuant, fp8-static, nvfp4 and --kv-cache observe the calibration */
        if (o->calib_path) qd_info("quantize: RTN does not use calibration data; --calib ignored");
        return QD_OK;
    }
    if (!o->calib_path)
        return qd_fail(QD_ERR_USAGE, "quantize: --calib FILE is required for %s",
                           o->q.smooth                          ? "--smoothquant"
                           : qd_scheme_static_act(base->scheme) ? qd_scheme_name(base->scheme)
                                                                : qd_method_name(base->method));
    if (qd_mpi_rank() != 0) return QD_OK;
    qd_calib_opts co = {.path = o->calib_path, .model_dir = o->model_dir, .nsamples = run->nsamples,
                        .seqlen = run->seqlen, .seed = (uint64_t)run->seed,
                        .mode = strcmp(run->calib_mode, "concat") == 0 ? QD_CALIB_CONCAT : QD_CALIB_RANDOM,
                        .chat = QD_CHAT_AUTO};
    qd_chat_template_parse(p->chat_template ? p->chat_template : "auto", &co.chat);
    qd_tokenizer *tok = NULL;
    qd_status st = qd_tokenizer_load(o->model_dir, &tok);
    if (st == QD_OK) st = qd_calib_load(&co, tok, set);
    /* an id the embedding has no row for (a tokenizer larger than the model, and text that uses the
     * extra tokens): refused here, naming both files, not at the first forward. Unused extra tokens
     * are no error: transformers loads such models too. */
    int32_t top = -1;
    for (size_t i = 0; st == QD_OK && set->ids && i < (size_t)set->nseq * (size_t)set->seqlen; i++)
        if (set->ids[i] > top) top = set->ids[i];
    if (st == QD_OK && top >= cfg->vocab)
        st = qd_fail(QD_ERR_FORMAT, "%s: the calibration has token id %d (%s/tokenizer.json), outside %s/config.json's "
                     "vocab_size %d", o->calib_path, top, o->model_dir, o->model_dir, cfg->vocab);
    qd_tokenizer_free(tok);
    if (st == QD_OK)
        qd_info("quantize: %s, %d x %d calibration tokens (%s, sha256 %.16s...)", qd_method_name(base->method),
                set->nseq, set->seqlen, run->calib_mode, set->sha256_hex);
    return st;
}

qd_status qd_quantize_command(const qd_run_params *p) {
    qd_run_opts ro = p->run;
    QD_CHECK(qd_mpi_agree(qd_mpi_rank() == 0 ? qd_run_check_paths(&ro) : QD_OK));
    /* defaults < recipe < flags */
    qd_recipe *recipe = NULL;
    qd_qspec base;
    qd_recipe_run run;
    /* the flags alone are the same on every rank, so rank 0 alone reports them; a recipe file might not
     * be readable on every node, so each rank reports its own */
    qd_log_set_alike(!ro.recipe_path);
    qd_status fst = qd_recipe_apply_flags(ro.recipe_path, &p->flags, &recipe, &base, &run);
    /* the fp4 schemes too are refused: the weight-only ones quantize no activation, and auto's search
     * measures int8 W8A8 error (docs/numerics.md) */
    int w8a8 = base.scheme == QD_SCHEME_W8A8_INT8 || qd_scheme_is_fp8(base.scheme);
    if (fst == QD_OK && ro.q.smooth && (base.method == QD_METHOD_AWQ || !w8a8))
        fst = qd_fail(QD_ERR_USAGE, "--smoothquant smooths the activations of the W8A8 schemes before gptq or rtn, "
                      "not %s with %s: use --scheme w8a8-int8, fp8-dynamic, fp8-block or fp8-static and --method gptq "
                      "or rtn", qd_scheme_name(base.scheme), qd_method_name(base.method));
    qd_log_set_alike(0);
    if (fst != QD_OK) {
        qd_recipe_free(recipe);
        return fst;
    }
    if (base.method == QD_METHOD_AWQ && base.bits != 4 && p->format_given && strcmp(ro.format, "fake") == 0)
        qd_warn("quantize: the awq format stores 4-bit weights only; export this %d-bit AWQ run with --format gptq "
                "or compressed-tensors", base.bits);
    qd_model_cfg cfg;
    qd_calib_set set = {0};
    /* rank 0 reads the model's metadata first and alone reports what is wrong with it; the others
     * read it only once rank 0 found it good, so one bad config.json is one line, not one per rank */
    qd_status st = QD_OK;
    for (int pass = 0; pass < 2 && st == QD_OK; pass++) {
        if ((qd_mpi_rank() == 0) == (pass == 0)) {
            st = qd_model_cfg_load(ro.model_dir, &cfg);
            if (st == QD_OK) st = qd_model_check_meta_files(ro.model_dir); /* a file the output cannot carry: before any work */
            if (st == QD_OK) st = qd_backend_spec_set_math(&ro.backend, p->math, cfg.dtype);
        }
        st = qd_mpi_agree(st);
    }
    if (st != QD_OK) goto done;
    if (!run.seqlen) {
        int dflt = base.method == QD_METHOD_AWQ ? 512 : 2048;
        run.seqlen = cfg.max_pos > 0 && cfg.max_pos < dflt ? cfg.max_pos : dflt;
    } else if (base.method != QD_METHOD_RTN && cfg.max_pos > 0 && run.seqlen > cfg.max_pos && qd_mpi_rank() == 0) {
        qd_warn("quantize: --seqlen %d exceeds the model's max_position_embeddings %d", run.seqlen, cfg.max_pos);
    }
    /* the fp8 and w8a8 schemes exist only as compressed-tensors checkpoints (or the fake directory), and
     * so do the KV-cache scales */
    if (!p->format_given && (base.scheme != QD_SCHEME_WNA16 || p->run.q.kv_cache)) ro.format = "compressed-tensors";
    const char *sd = p->scale_dtype ? p->scale_dtype : "f16";
    qd_dtype sdt = strcmp(sd, "bf16") == 0 ? QD_DT_BF16 : strcmp(sd, "f32") == 0 ? QD_DT_F32 : QD_DT_F16;
    /* compressed-tensors stores scales in the model's dtype: round to it so the export is exact */
    if (!p->scale_dtype && strcmp(ro.format, "compressed-tensors") == 0 &&
        (cfg.dtype == QD_DT_BF16 || cfg.dtype == QD_DT_F32 || cfg.dtype == QD_DT_F16))
        sdt = cfg.dtype;
    ro.q = (qd_quantize_opts){.base = base, .recipe = recipe, .true_sequential = run.true_sequential,
                              .chunk_tokens = p->run.q.chunk_tokens, .scale_dtype = sdt,
                              .moe_all = p->run.q.moe_all, .moe_min_tokens = p->run.q.moe_min_tokens,
                              .expert_parallel = p->run.q.expert_parallel,
                              .moe_model = cfg.moe_experts > 0, .smooth = p->run.q.smooth,
                              .smooth_alpha = p->run.q.smooth_alpha};
    ro.q.kv_cache = p->run.q.kv_cache;
    ro.calib_mode = run.calib_mode, ro.seed = (uint64_t)run.seed;
    if (!p->format_given && base.method == QD_METHOD_AWQ && !ro.q.kv_cache) ro.format = "awq";
    if (p->run.q.expert_parallel > 0 && (cfg.moe_experts <= 0 || base.method != QD_METHOD_GPTQ)) {
        st = qd_mpi_rank() == 0 ? qd_fail(QD_ERR_USAGE, "--expert-parallel on solves GPTQ's experts whole on their "
                                          "owner ranks; %s: drop it", cfg.moe_experts <= 0 ? "this model has no "
                                          "experts (config.json)" : base.method == QD_METHOD_AWQ ? "AWQ's experts stay "
                                          "data parallel" : "RTN solves nothing")
                                : QD_ERR_USAGE;
        goto done;
    }
    if (p->moe_flag && cfg.moe_experts <= 0) { /* as --expert-parallel on: a flag that would change nothing */
        st = qd_mpi_rank() == 0 ? qd_fail(QD_ERR_USAGE, "%s sets how a MoE model's experts are calibrated, but this "
                                          "model has no experts (config.json): drop it", p->moe_flag)
                                : QD_ERR_USAGE;
        goto done;
    }
    if (p->moe_flag && base.method == QD_METHOD_RTN) { /* only GPTQ's Hessians and AWQ's statistics read them */
        st = qd_mpi_rank() == 0 ? qd_fail(QD_ERR_USAGE, "%s sets which tokens calibrate each expert's GPTQ Hessians or "
                                          "AWQ statistics, but RTN calibrates none: drop it", p->moe_flag)
                                : QD_ERR_USAGE;
        goto done;
    }
    /* the config, the recipe and the flags are the same on every rank: rank 0 alone reports them */
    qd_log_set_alike(!ro.recipe_path);
    if (ro.q.kv_cache) st = qd_run_check_kv(&cfg, ro.format, ro.calib_path);
    /* every module's spec against the method and the format, before calibration or staging */
    if (st == QD_OK) st = qd_run_check_specs(&cfg, &base, recipe, ro.format);
    qd_log_set_alike(0);
    if (st != QD_OK) goto done;
    st = load_calib(p, &cfg, &base, &run, &set);
    if (st == QD_OK && set.ids) {
        ro.calib_ids = set.ids;
        ro.q.nseq = (size_t)set.nseq;
        ro.q.seq_len = (size_t)set.seqlen;
        ro.calib_sha256 = set.sha256_hex;
    }
    QD_CHECK_GOTO(qd_mpi_agree(st), st, done);
    st = qd_quantize_run(&ro);
done:
    qd_calib_free(&set);
    qd_recipe_free(recipe);
    return st;
}
