/* SPDX-License-Identifier: MIT
 * run-report.c - the run report (qdist_report.json): the one writer, on rank 0, from the gathered
 * module records and per-rank timings, and from the staging for resumed blocks.
 */
#include "run-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-fs.h"

qd_status qd_run_note_resumed(qd_run *k) {
    int n = k->cfg->nlayers;
    k->resumed = calloc((size_t)n + 1, 1);
    if (!k->resumed) return qd_fail(QD_ERR_NOMEM, "quantize: out of memory");
    k->nresumed = 0;
    for (int b = 0; b < n; b++) k->nresumed += k->resumed[b] = (unsigned char)qd_stage_has_block(k->stage, b);
    return QD_OK;
}

/* in rank order, so each block's modules stay in order */
qd_status qd_run_gather_records(const qd_run *k, qd_qrecord **out, size_t *nout) {
    void *all = NULL;
    size_t total = 0;
    *out = NULL, *nout = 0;
    QD_CHECK(qd_mpi_gatherv(k->recs, k->nrecs * sizeof *k->recs, &all, &total));
    *out = all;
    *nout = total / sizeof(qd_qrecord);
    return QD_OK;
}

static cJSON *phases_json(cJSON *parent, const double *ph) {
    cJSON *j = cJSON_AddObjectToObject(parent, "phases_s");
    for (int i = 0; j && i < QD_PH_N; i++) cJSON_AddNumberToObject(j, qd_phase_name((qd_phase)i), ph[i]);
    return j;
}

static void memory_json(cJSON *parent, const qd_run_times *t) {
    cJSON *m = cJSON_AddObjectToObject(parent, "memory");
    if (!m) return;
    cJSON_AddNumberToObject(m, "budget_bytes", t->mem_budget);
    cJSON_AddNumberToObject(m, "backend_peak_bytes", t->mem_reserved_peak);
    cJSON_AddNumberToObject(m, "device_used_peak_bytes", t->mem_used_peak);
    cJSON_AddBoolToObject(m, "gptq_resident_path", t->resident_path);
}

qd_status qd_run_build_report(const qd_run_opts *o, const qd_stage *stage, int nblocks, const unsigned char *resumed,
                              const qd_plan *plan, const qd_run_times *all, const qd_qrecord *recs, size_t nrecs,
                              double wall, cJSON **out) {
    *out = NULL;
    cJSON *root = cJSON_CreateObject(), *mods = cJSON_CreateObject(), *ranks = cJSON_CreateArray();
    if (!root || !mods || !ranks) {
        cJSON_Delete(root), cJSON_Delete(mods), cJSON_Delete(ranks);
        return qd_fail(QD_ERR_NOMEM, "report: out of memory");
    }
    const qd_qspec *s = &o->q.base;
    cJSON_AddStringToObject(root, "qdist_version", QD_VERSION);
    cJSON_AddStringToObject(root, "model", o->model_dir);
    cJSON_AddStringToObject(root, "format", o->format);
    cJSON *set = qd_quantize_settings_json(root, &o->q);
    if (!set) {
        cJSON_Delete(root), cJSON_Delete(mods), cJSON_Delete(ranks);
        return qd_fail(QD_ERR_NOMEM, "report: out of memory");
    }
    if (o->q.moe_model) {
        cJSON_AddStringToObject(set, "moe_calibration", o->q.moe_all ? "all" : "routed");
        cJSON_AddNumberToObject(set, "moe_min_tokens", (double)o->q.moe_min_tokens);
    }
    cJSON_AddStringToObject(set, "schedule", o->schedule == QD_SCHED_EXACT ? "exact" : "overlap");
    cJSON_AddStringToObject(set, "parallel", o->parallel == QD_PAR_DATA ? "data" : "pipeline");
    cJSON_AddNumberToObject(set, "ranks", plan->nranks);
    cJSON *cal = cJSON_AddObjectToObject(root, "calibration");
    cJSON_AddStringToObject(cal, "path", o->calib_path ? o->calib_path : "");
    cJSON_AddStringToObject(cal, "mode", o->calib_mode ? o->calib_mode : "");
    cJSON_AddNumberToObject(cal, "nsamples", (double)o->q.nseq);
    cJSON_AddNumberToObject(cal, "seqlen", (double)o->q.seq_len);
    cJSON_AddNumberToObject(cal, "seed", (double)o->seed);
    cJSON_AddNumberToObject(cal, "tokens", (double)(o->q.nseq * o->q.seq_len));
    cJSON_AddStringToObject(cal, "sha256", o->calib_sha256 ? o->calib_sha256 : "");
    double loss = 0;
    int nq = 0, nfb = 0;
    for (int b = 0; b < nblocks; b++) {
        /* modules quantized in this run come from the ranks' records (none for a block the recipe skips
         * whole); resumed blocks from the staging */
        qd_staged_block *sb = NULL;
        if (resumed[b]) {
            qd_status st = qd_stage_read_block(stage, b, &sb);
            if (st != QD_OK) {
                cJSON_Delete(root), cJSON_Delete(mods), cJSON_Delete(ranks);
                return st;
            }
        }
        size_t n = sb ? sb->nmodules : nrecs;
        for (size_t i = 0; i < n; i++) {
            qd_qrecord r;
            if (sb) {
                r = qd_qrecord_of(b, sb->rank, &sb->modules[i].q, &sb->modules[i].s);
            } else if (recs[i].block == b) {
                r = recs[i];
            } else {
                continue;
            }
            char name[320];
            snprintf(name, sizeof name, "model.layers.%d.%s", b, r.name);
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "method", qd_method_name(s->method));
            cJSON_AddNumberToObject(j, "bits", r.bits);
            cJSON_AddNumberToObject(j, "group_size", r.group_size);
            cJSON_AddBoolToObject(j, "sym", r.sym);
            if (r.scheme != QD_SCHEME_WNA16) cJSON_AddStringToObject(j, "scheme", qd_scheme_name((qd_scheme)r.scheme));
            cJSON_AddNumberToObject(j, "N", (double)r.N);
            cJSON_AddNumberToObject(j, "K", (double)r.K);
            cJSON_AddNumberToObject(j, "loss", r.s.loss);
            if (r.s.damp >= 0) cJSON_AddNumberToObject(j, "damp", r.s.damp);
            else cJSON_AddNullToObject(j, "damp");
            if (r.s.fallback[0]) cJSON_AddStringToObject(j, "fallback", r.s.fallback);
            else cJSON_AddNullToObject(j, "fallback");
            cJSON_AddNumberToObject(j, "calib_tokens", (double)(o->q.nseq * o->q.seq_len));
            if (r.s.expert) { /* a routed expert: its own tokens (the fallback says when they were too few) */
                cJSON_AddNumberToObject(j, "expert", r.s.expert - 1);
                cJSON_AddNumberToObject(j, "expert_tokens", (double)r.s.expert_tokens);
            }
            cJSON_AddNumberToObject(j, "seconds", r.s.seconds);
            cJSON_AddNumberToObject(j, "rank", r.rank);
            cJSON_AddItemToObject(mods, name, j);
            loss += r.s.loss;
            nq++;
            nfb += r.s.fallback[0] != 0;
        }
        qd_staged_block_free(sb);
    }
    cJSON_AddItemToObject(root, "modules", mods);
    for (int r = 0; r < plan->nranks; r++) {
        const qd_run_times *t = &all[r];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "rank", r);
        cJSON_AddNumberToObject(j, "first_block", plan->first[r]);
        cJSON_AddNumberToObject(j, "blocks", plan->count[r]);
        cJSON_AddNumberToObject(j, "quantized", t->quantized);
        cJSON_AddNumberToObject(j, "replayed", t->replayed);
        cJSON_AddNumberToObject(j, "load_s", t->load_s);
        cJSON_AddNumberToObject(j, "quantize_s", t->quant_s);
        cJSON_AddNumberToObject(j, "replay_s", t->replay_s);
        cJSON_AddNumberToObject(j, "full_precision_pass_s", t->fp_s);
        cJSON_AddNumberToObject(j, "staging_s", t->stage_s);
        cJSON_AddNumberToObject(j, "staging_write_overlapped_s", t->stage_write_s);
        cJSON_AddNumberToObject(j, "communication_wait_s", t->wait_s);
        cJSON_AddNumberToObject(j, "total_s", t->total_s);
        phases_json(j, t->phase);
        memory_json(j, t);
        cJSON_AddItemToArray(ranks, j);
    }
    cJSON_AddItemToObject(root, "ranks", ranks);
    cJSON *tot = cJSON_AddObjectToObject(root, "totals");
    cJSON_AddNumberToObject(tot, "quantized", nq);
    cJSON_AddNumberToObject(tot, "fallbacks", nfb);
    cJSON_AddNumberToObject(tot, "loss", loss);
    cJSON_AddNumberToObject(tot, "seconds", wall);
    /* summed over ranks (ranks run at once, so the sum can exceed the wall time) */
    double ph[QD_PH_N] = {0}, peak = 0, used = 0;
    for (int r = 0; r < plan->nranks; r++) {
        for (int i = 0; i < QD_PH_N; i++) ph[i] += all[r].phase[i];
        if (all[r].mem_reserved_peak > peak) peak = all[r].mem_reserved_peak;
        if (all[r].mem_used_peak > used) used = all[r].mem_used_peak;
    }
    phases_json(tot, ph);
    cJSON_AddNumberToObject(tot, "backend_peak_bytes", peak);
    cJSON_AddNumberToObject(tot, "device_used_peak_bytes", used);
    *out = root;
    return QD_OK;
}

qd_status qd_run_save_report(cJSON *root, const char *dir) {
    char *text = cJSON_Print(root);
    if (!text) return qd_fail(QD_ERR_NOMEM, "report: out of memory");
    char path[4400];
    qd_status st = qd_path_join(path, sizeof path, dir, "qdist_report.json");
    if (st == QD_OK) st = qd_write_file_atomic(path, text, strlen(text));
    cJSON_free(text);
    return st;
}

qd_status qd_run_finish_report(cJSON *root, double report_s, double export_s, double wall, const char *out_dir) {
    double write_s = report_s + export_s;
    cJSON *tot = cJSON_GetObjectItemCaseSensitive(root, "totals");
    cJSON *ph = tot ? cJSON_GetObjectItemCaseSensitive(tot, "phases_s") : NULL;
    cJSON *ranks = cJSON_GetObjectItemCaseSensitive(root, "ranks");
    cJSON *r0 = ranks ? cJSON_GetArrayItem(ranks, 0) : NULL;
    cJSON *ph0 = r0 ? cJSON_GetObjectItemCaseSensitive(r0, "phases_s") : NULL;
    const char *w = qd_phase_name(QD_PH_WRITE);
    if (ph) cJSON_ReplaceItemInObjectCaseSensitive(ph, w, cJSON_CreateNumber(write_s));
    if (ph0) cJSON_ReplaceItemInObjectCaseSensitive(ph0, w, cJSON_CreateNumber(write_s));
    if (tot) cJSON_ReplaceItemInObjectCaseSensitive(tot, "seconds", cJSON_CreateNumber(wall));
    if (tot) cJSON_AddNumberToObject(tot, "report_s", report_s); /* the write phase: building the report ... */
    if (tot) cJSON_AddNumberToObject(tot, "export_s", export_s); /* ... and exporting the checkpoint */
    return qd_run_save_report(root, out_dir);
}
