/* SPDX-License-Identifier: MIT
 * run-checks.c - refusals before any work (paths, every module's spec against the method and the
 * format, scheme, group sizes, output, disk space) and the memory budget that decides what stays
 * resident.
 */
#include "run-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-export.h"
#include "qd-fs.h"
#include "qd-param.h"
#include "qd-paths.h"
#include "qd-st-writer.h"

/* A file can be made where path is to go: a probe file is created (and removed) in its nearest
 * existing parent, so an unwritable place (/proc, a read-only mount) is reported with its errno
 * before the free-space check, which would only see a file system with no room. */
static qd_status check_writable(const char *flag, const char *path) {
    char dir[4200], probe[4300];
    snprintf(dir, sizeof dir, "%s", path);
    do {
        char *slash = strrchr(dir, '/');
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == dir) slash[1] = '\0';
        else *slash = '\0';
    } while (!qd_path_exists(dir) && strcmp(dir, ".") != 0 && strcmp(dir, "/") != 0);
    snprintf(probe, sizeof probe, "%s/.qdist-write-probe-%ld", strcmp(dir, "/") == 0 ? "" : dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return qd_fail(QD_ERR_IO, "%s %s: cannot create a file in %s: %s", flag, path, dir, strerror(errno));
    close(fd);
    unlink(probe);
    return QD_OK;
}

/* The model, the output and the staging must be three separate trees (the output's replacement and
 * the staging's clean-up remove files), and every name must fit qdist's suffixes. */
qd_status qd_run_check_paths(const qd_run_opts *o) {
    QD_CHECK(qd_paths_disjoint("--output", o->output_dir, "--model", o->model_dir));
    QD_CHECK(qd_outdir_check(o->output_dir, o->overwrite));
    char dflt[4200];
    const char *staging = o->staging_dir;
    if (!staging) {
        if (snprintf(dflt, sizeof dflt, "%s.qdist-staging", o->output_dir) >= (int)sizeof dflt)
            return qd_fail(QD_ERR_USAGE, "--output %s: path too long", o->output_dir);
        staging = dflt;
    }
    const char *flag = o->staging_dir ? "--staging" : "the default staging (--output plus .qdist-staging)";
    QD_CHECK(qd_path_check_length(flag, staging, 32)); /* "/block-NNNNN.h5.tmp", "/meta/..." */
    QD_CHECK(qd_paths_disjoint(flag, staging, "--output", o->output_dir));
    QD_CHECK(qd_paths_disjoint(flag, staging, "--model", o->model_dir));
    QD_CHECK(check_writable(o->staging_dir ? "--staging" : "--output", staging));
    return check_writable("--output", o->output_dir);
}

/* every block's Linear table, one after the other: *n entries, [block][Linear] (free the result) */
static qd_status all_linears(const qd_model_cfg *cfg, qd_linear **out, int *per, int **counts) {
    int m = qd_model_max_linears(cfg);
    *per = m;
    *out = calloc((size_t)cfg->nlayers * (size_t)m + 1, sizeof **out);
    *counts = calloc((size_t)cfg->nlayers + 1, sizeof **counts);
    if (!*out || !*counts) {
        free(*out), free(*counts);
        return qd_fail(QD_ERR_NOMEM, "quantize: out of memory listing the Linears of %d blocks", cfg->nlayers);
    }
    for (int b = 0; b < cfg->nlayers; b++) (*counts)[b] = qd_model_linears(cfg, b, *out + (size_t)b * m, m);
    return QD_OK;
}

/* " (module M; recipe R: overrides[i] "match": "P" sets bits)" or " (module M, the run's settings)" */
static void who(const qd_recipe *r, const char *module, char *buf, size_t n) {
    char why[1024];
    if (qd_recipe_describe(r, module, why, sizeof why) > 0)
        snprintf(buf, n, " (module %s; %s: %s)", module, qd_recipe_path(r), why);
    else
        snprintf(buf, n, " (module %s, the run's settings)", module);
}

static qd_status check_specs(const qd_model_cfg *cfg, const qd_qspec *base, const qd_recipe *recipe, int fake,
                             qd_export_format f, const qd_linear *lins, int per, const int *counts);

qd_status qd_run_check_specs(const qd_model_cfg *cfg, const qd_qspec *base, const qd_recipe *recipe, const char *format) {
    int fake = strcmp(format, "fake") == 0;
    qd_export_format f = QD_EXPORT_GPTQ;
    if (!fake) QD_CHECK(qd_export_format_parse(format, &f));
    qd_linear *lins;
    int per, *counts;
    QD_CHECK(all_linears(cfg, &lins, &per, &counts));
    qd_status st = check_specs(cfg, base, recipe, fake, f, lins, per, counts);
    int nov = qd_recipe_noverrides(recipe);
    unsigned char *hit = st == QD_OK && nov ? calloc((size_t)nov, 1) : NULL;
    if (hit && qd_mpi_rank() == 0) {
        char module[160], example[160] = "";
        for (int layer = 0; layer < cfg->nlayers; layer++)
            for (int l = 0; l < counts[layer]; l++) {
                snprintf(module, sizeof module, "model.layers.%d.%s", layer, lins[(size_t)layer * per + l].module);
                if (!example[0]) snprintf(example, sizeof example, "%s", module);
                /* a router (kept in full precision whatever the recipe says) does not count as found */
                if (lins[(size_t)layer * per + l].quantize) qd_recipe_mark(recipe, module, hit);
            }
        qd_recipe_warn_unmatched(recipe, hit, example);
    } else if (st == QD_OK && nov && !hit)
        st = qd_fail(QD_ERR_NOMEM, "quantize: out of memory checking %d recipe overrides", nov);
    free(hit), free(lins), free(counts);
    return st;
}

static qd_status check_specs(const qd_model_cfg *cfg, const qd_qspec *base, const qd_recipe *recipe, int fake,
                             qd_export_format f, const qd_linear *lins, int per, const int *counts) {
    int awq_gs = 0;
    char awq_gs_module[160] = "";
    for (int layer = 0; layer < cfg->nlayers; layer++)
        for (int l = 0; l < counts[layer]; l++) {
            const qd_linear *lin = &lins[(size_t)layer * per + l];
            char module[160], w[1400];
            qd_qspec s;
            snprintf(module, sizeof module, "model.layers.%d.%s", layer, lin->module);
            qd_recipe_resolve(recipe, base, module, &s);
            if (s.skip || !lin->quantize) continue;
            size_t K = (size_t)lin->K;
            if (s.scheme != QD_SCHEME_WNA16) {
                who(recipe, module, w, sizeof w);
                QD_CHECK(qd_qspec_check_scheme(&s, w));
                if (base->method == QD_METHOD_AWQ) /* AWQ scales whole blocks with its integer quantizer */
                    return qd_fail(QD_ERR_USAGE, "quantize: scheme %s in an awq run%s: AWQ quantizes integer "
                                   "weight-only schemes; use --method rtn or gptq", qd_scheme_name(s.scheme), w);
                if (!fake) QD_CHECK(qd_export_check_qscheme(f, s.scheme, w));
                /* the weight blocks could be padded, but the activations' groups of 128 cannot */
                if (s.scheme == QD_SCHEME_FP8_BLOCK && K % QD_FP8_BLOCK_SIZE)
                    return qd_fail(QD_ERR_USAGE, "quantize: fp8-block needs input features divisible by %d (its "
                                   "activations are quantized in groups of %d), not %zu%s; use fp8-dynamic for it (a "
                                   "recipe override) or skip it", QD_FP8_BLOCK_SIZE, QD_FP8_BLOCK_SIZE, K, w);
                int g4 = qd_scheme_fp4_group(s.scheme);
                if (g4 && K % (size_t)g4)
                    return qd_fail(QD_ERR_USAGE, "quantize: %s needs input features divisible by its group of %d, not "
                                   "%zu%s; give it another scheme (a recipe override) or skip it",
                                   qd_scheme_name(s.scheme), g4, K, w);
                continue; /* bits and groups are the scheme's */
            }
            if (s.bits < 2 || s.bits > 8) {
                who(recipe, module, w, sizeof w);
                return qd_fail(QD_ERR_USAGE, "quantize: %d bits%s: %s quantizes 2..8 bits", s.bits, w,
                               qd_method_name(s.method));
            }
            if (s.group_size > 0 && (size_t)s.group_size != K && K % (size_t)s.group_size) {
                who(recipe, module, w, sizeof w);
                return qd_fail(QD_ERR_USAGE, "quantize: group_size %d does not divide the %zu input features%s",
                               s.group_size, K, w);
            }
            if (fake) continue;
            who(recipe, module, w, sizeof w);
            QD_CHECK(qd_export_check_module_scheme(f, 0, s.bits, s.group_size, s.sym, s.act_order && !s.static_groups,
                                                   w));
            if (f == QD_EXPORT_AWQ) {
                if (!awq_gs) {
                    awq_gs = s.group_size;
                    snprintf(awq_gs_module, sizeof awq_gs_module, "%s", module);
                } else if (s.group_size != awq_gs)
                    return qd_fail(QD_ERR_UNSUPPORTED, "quantize: awq has one group size per checkpoint, but %s has "
                                   "%d and group_size %d is set%s; use --format gptq or compressed-tensors",
                                   awq_gs_module, awq_gs, s.group_size, w);
            }
        }
    return QD_OK;
}

/* Refuse before any work when the format cannot express the scheme, a group size does not divide a
 * Linear's input features, or the output exists. */
qd_status qd_run_preflight(const qd_run_opts *o, const qd_model *m) {
    const qd_model_cfg *cfg = qd_model_cfg_of(m); /* the checkpoint was checked against it at open */
    qd_linear *lins;
    int per, *counts;
    QD_CHECK(all_linears(cfg, &lins, &per, &counts));
    qd_status st = QD_OK;
    for (int l = 0; l < counts[0] && st == QD_OK; l++) { /* block 0 (its shapes are every block's) */
        char module[160];
        qd_qspec spec;
        snprintf(module, sizeof module, "model.layers.0.%s", lins[l].module);
        qd_recipe_resolve(o->q.recipe, &o->q.base, module, &spec);
        size_t G;
        if (!spec.skip && lins[l].quantize) st = qd_qspec_groups(&spec, module, (size_t)lins[l].K, &G);
    }
    free(lins), free(counts);
    QD_CHECK(st);
    qd_export_format f;
    QD_CHECK(qd_export_format_parse(o->format, &f));
    const qd_qspec *s = &o->q.base;
    if (s->scheme == QD_SCHEME_WNA16)
        QD_CHECK(qd_export_check_scheme(f, 0, s->bits, s->group_size, s->sym, s->act_order && !s->static_groups));
    else QD_CHECK(qd_export_check_qscheme(f, s->scheme, ""));
    QD_CHECK(qd_model_check_fp8_values(cfg, qd_model_ckpt(m))); /* an FP8 source's scales, before any work */
    QD_CHECK(qd_outdir_check(o->output_dir, o->overwrite));
    qd_outdir_clean_stale(o->output_dir); /* a killed run's partial export: its space is needed below */
    return QD_OK;
}

/* Disk needed by the staging (codes as bytes, fp32 scales, int32 zeros, g_idx per Linear) and by the
 * export (packed Linears plus everything else at its source size), checked before any work. */
qd_status qd_run_check_space(const qd_run_opts *o, const qd_model *m, const char *staging) {
    const qd_model_cfg *cfg = qd_model_cfg_of(m);
    qd_export_format f;
    QD_CHECK(qd_export_format_parse(o->format, &f));
    qd_linear *lins;
    int per, *counts;
    QD_CHECK(all_linears(cfg, &lins, &per, &counts));
    uint64_t model_bytes = qd_model_total_bytes(m), linear_bytes = 0, stage = 0, out = 0;
    unsigned wbytes = cfg->fp8_source ? 1 : qd_dtype_bits(cfg->dtype) / 8; /* an FP8 source's Linears: e4m3 */
    for (int b = 0; b < cfg->nlayers; b++)
        for (int l = 0; l < counts[b]; l++) {
            const qd_linear *lin = &lins[(size_t)b * per + l];
            uint64_t N = (uint64_t)lin->N, K = (uint64_t)lin->K;
            uint64_t G = o->q.base.group_size > 0 ? K / (uint64_t)o->q.base.group_size : 1;
            stage += N * K + 8 * G * N + 4 * K;
            out += qd_export_linear_bytes(f, 0, (int)N, (int)K, o->q.base.bits, o->q.base.group_size,
                                          o->q.base.sym, 1, 2);
            linear_bytes += N * K * wbytes;
        }
    free(lins), free(counts);
    out += model_bytes > linear_bytes ? model_bytes - linear_bytes : 0;
    uint64_t free_bytes = 0;
    QD_CHECK(qd_disk_free(staging, &free_bytes));
    if (free_bytes < stage + stage / 100)
        return qd_fail(QD_ERR_NOSPACE, "%s: staging needs about %.2f GB, only %.2f GB free", staging, stage / 1e9,
                       free_bytes / 1e9);
    return qd_export_check_space(o->output_dir, out);
}

/* The memory budget (--gpu-mem, else most of the device's free memory; host backends without the
 * flag keep the driver's 6 GiB rule) decides what stays resident: GPTQ's one-forward resident path is
 * taken when its caches fit beside the activations and the driver's working set. MoE models: the expert
 * Hessians held at once (q->moe_hess_bytes) are QD_MOE_HESS_MIB, else 90% of what the budget leaves
 * beside the activations and the working set, else (host backends without --gpu-mem) 16 GiB. */
#define QD_MOE_HESS_HOST_BYTES (16ull << 30)

static qd_status plan_moe(qd_run *k, qd_quantize_opts *q, double room) {
    int mib = 0;
    QD_CHECK(qd_param_posint(QD_PARAM_MOE_HESS_MIB, INT_MAX, &mib));
    if (mib) q->moe_hess_bytes = (size_t)mib << 20;
    else if (k->t.mem_budget > 0) q->moe_hess_bytes = room * 0.9 >= 1 ? (size_t)(room * 0.9) : 1;
    else q->moe_hess_bytes = QD_MOE_HESS_HOST_BYTES;
    size_t all = qd_quantize_moe_hess_bytes(k->cfg);
    if (q->nseq && q->base.method == QD_METHOD_GPTQ && qd_mpi_rank() == 0)
        qd_info("quantize: expert Hessians %.1f GB for every expert at once; %.1f GB at a time (%s)%s", all / 1e9,
                q->moe_hess_bytes / 1e9, mib ? "QD_MOE_HESS_MIB" : k->t.mem_budget > 0 ? "memory budget" : "host default",
                q->moe_hess_bytes >= all ? "" : ": experts solved in batches");
    return QD_OK;
}

qd_status qd_run_plan_memory(qd_run *k, qd_quantize_opts *q) {
    const qd_run_opts *o = k->o;
    struct qd_mem_info mi;
    QD_CHECK(qd_be_mem_info(k->be, &mi));
    double budget = o->mem_budget_gib > 0 ? o->mem_budget_gib * (double)(1ull << 30) : 0;
    if (budget <= 0 && mi.total) { /* leave room for the CUDA context's growth, cuBLAS/cuSOLVER workspaces */
        double reserve = (double)mi.total * 0.06 > 2.0 * (1 << 30) ? (double)mi.total * 0.06 : 2.0 * (1 << 30);
        budget = (double)mi.free > reserve ? (double)mi.free - reserve : 0;
        budget /= k->dev_share; /* ranks sharing one GPU all see it free at start-up */
    }
    size_t rows = q->nseq * q->seq_len, act = 2 * rows * (size_t)k->cfg->hidden * 4;
    size_t resident = qd_quantize_resident_bytes(k->cfg, q), work = qd_quantize_work_bytes(k->cfg, q);
    k->t.mem_budget = budget;
    if (budget > 0) {
        double room = budget - (double)act - (double)work;
        q->resident_max_bytes = room >= 1 ? (size_t)room : 1; /* 1: never resident (0 would mean the default) */
    }
    if (k->cfg->moe_experts > 0) QD_CHECK(plan_moe(k, q, budget - (double)act - (double)work));
    size_t limit = q->resident_max_bytes ? q->resident_max_bytes : (6ull << 30);
    k->t.resident_path = q->base.method == QD_METHOD_GPTQ && q->true_sequential && resident <= limit;
    if (rows && q->base.method == QD_METHOD_GPTQ && qd_mpi_rank() == 0)
        qd_info("quantize: memory budget %.1f GB (%s): activations %.1f GB + working set ~%.1f GB + resident caches "
                "%.1f GB -> %s", budget / 1e9, o->mem_budget_gib > 0 ? "--gpu-mem" : budget > 0 ? "free device memory" : "host default",
                act / 1e9, work / 1e9, resident / 1e9,
                k->t.resident_path ? "one forward per block (resident)" : "one forward per group (re-forward)");
    return QD_OK;
}
