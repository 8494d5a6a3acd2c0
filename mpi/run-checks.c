/* SPDX-License-Identifier: MIT
 * run-checks.c - refusals before any work (scheme, group sizes, output, disk space) and the memory
 * budget that decides what stays resident.
 */
#include "run-internal.h"

#include <stdio.h>

#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-export.h"
#include "qd-fs.h"
#include "qd-st-writer.h"

/* Refuse before any work when the format cannot express the scheme, a group size does not divide a
 * Linear's input features, or the output exists. */
qd_status qd_run_preflight(const qd_run_opts *o, const qd_model_cfg *cfg) {
    qd_checkpoint *ck;
    QD_CHECK(qd_ckpt_open(o->model_dir, 0, &ck));
    qd_status cst = qd_model_check_ckpt(cfg, ck, 0);
    qd_ckpt_close(ck);
    QD_CHECK(cst);
    const char *names[QD_MAX_LINEARS];
    int groups[QD_MAX_LINEARS];
    int n = qd_model_linear_names(cfg, names, groups);
    for (int l = 0; l < n && l < QD_NLIN; l++) {
        char module[160];
        qd_qspec spec;
        snprintf(module, sizeof module, "model.layers.0.%s", names[l]);
        qd_recipe_resolve(o->q.recipe, &o->q.base, module, &spec);
        size_t G, K = (size_t)(l == QD_LIN_O ? (int64_t)cfg->nheads * cfg->head_dim : l == QD_LIN_DOWN ? cfg->intermediate : cfg->hidden);
        if (!spec.skip) QD_CHECK(qd_qspec_groups(&spec, module, K, &G));
    }
    qd_export_format f;
    QD_CHECK(qd_export_format_parse(o->format, &f));
    const qd_qspec *s = &o->q.base;
    QD_CHECK(qd_export_check_scheme(f, 0, s->bits, s->group_size, s->sym, s->act_order && !s->static_groups));
    QD_CHECK(qd_outdir_check(o->output_dir, o->overwrite));
    qd_outdir_clean_stale(o->output_dir); /* a killed run's partial export: its space is needed below */
    return QD_OK;
}

/* Disk needed by the staging (codes as bytes, fp32 scales, int32 zeros, g_idx per Linear) and by the
 * export (packed Linears plus everything else at its source size), checked before any work. */
qd_status qd_run_check_space(const qd_run_opts *o, const qd_model_cfg *cfg, const char *staging) {
    const char *names[QD_MAX_LINEARS];
    int groups[QD_MAX_LINEARS];
    int n = qd_model_linear_names(cfg, names, groups);
    qd_export_format f;
    QD_CHECK(qd_export_format_parse(o->format, &f));
    qd_checkpoint *ck;
    QD_CHECK(qd_ckpt_open(o->model_dir, 0, &ck));
    uint64_t model_bytes = 0, linear_bytes = 0, stage = 0, out = 0;
    for (size_t i = 0; i < ck->ntensors; i++) model_bytes += ck->tensors[i]->nbytes;
    unsigned wbytes = qd_dtype_bits(cfg->dtype) / 8;
    for (int l = 0; l < n && l < QD_NLIN; l++) {
        uint64_t K = (uint64_t)(l == QD_LIN_O ? (int64_t)cfg->nheads * cfg->head_dim : l == QD_LIN_DOWN ? cfg->intermediate : cfg->hidden);
        uint64_t N = (uint64_t)(l == QD_LIN_Q ? (int64_t)cfg->nheads * cfg->head_dim
                                : (l == QD_LIN_K || l == QD_LIN_V) ? (int64_t)cfg->nkv * cfg->head_dim
                                : (l == QD_LIN_GATE || l == QD_LIN_UP) ? cfg->intermediate : cfg->hidden);
        uint64_t G = o->q.base.group_size > 0 ? K / (uint64_t)o->q.base.group_size : 1;
        stage += (uint64_t)cfg->nlayers * (N * K + 8 * G * N + 4 * K);
        out += (uint64_t)cfg->nlayers * qd_export_linear_bytes(f, 0, (int)N, (int)K, o->q.base.bits,
                                                               o->q.base.group_size, o->q.base.sym, 1, 2);
        linear_bytes += (uint64_t)cfg->nlayers * N * K * wbytes;
    }
    qd_ckpt_close(ck);
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
 * taken when its caches fit beside the activations and the driver's working set. */
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
    size_t limit = q->resident_max_bytes ? q->resident_max_bytes : (6ull << 30);
    k->t.resident_path = q->base.method == QD_METHOD_GPTQ && q->true_sequential && resident <= limit;
    if (rows && q->base.method == QD_METHOD_GPTQ && qd_mpi_rank() == 0)
        qd_info("quantize: memory budget %.1f GB (%s): activations %.1f GB + working set ~%.1f GB + resident caches "
                "%.1f GB -> %s", budget / 1e9, o->mem_budget_gib > 0 ? "--gpu-mem" : budget > 0 ? "free device memory" : "host default",
                act / 1e9, work / 1e9, resident / 1e9,
                k->t.resident_path ? "one forward per block (resident)" : "one forward per group (re-forward)");
    return QD_OK;
}
