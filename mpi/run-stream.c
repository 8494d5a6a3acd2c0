/* SPDX-License-Identifier: MIT
 * run-stream.c - rank 0's export written during the run (shard/qd-export-stream.h): planned at the
 * start from the model config and the recipe, fed with every block this rank stages, finished after
 * the report; the fake format, QD_EXPORT_STREAM=0 and a block quantized differently from the plan
 * take the export from the staging after the run (run-export.c) instead.
 */
#include "run-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-export-stream.h"
#include "qd-fs.h"
#include "qd-param.h"

/* Every Linear the run will quantize, in the order the blocks stage them (run-worker.c: the block's
 * Linear table order, skipped modules and routers left out), with its shape and scheme; nonseq:
 * act-order g_idx (GPTQ with groups and without static groups). What the data turns out to be is compared with this block by block. */
static qd_status plan_heads(const qd_run *k, qd_qlinear **heads_out, int **nonseq_out, size_t *n_out) {
    const qd_model_cfg *cfg = k->cfg;
    int maxl = qd_model_max_linears(cfg);
    size_t cap = (size_t)cfg->nlayers * (size_t)maxl + 1, n = 0;
    qd_qlinear *heads = calloc(cap, sizeof *heads);
    int *nonseq = calloc(cap, sizeof *nonseq);
    qd_linear *lin = calloc((size_t)maxl, sizeof *lin);
    qd_status st = heads && nonseq && lin ? QD_OK : qd_fail(QD_ERR_NOMEM, "export: out of memory planning the export");
    for (int b = 0; b < cfg->nlayers && st == QD_OK; b++) {
        int nl = qd_model_linears(cfg, b, lin, maxl);
        for (int l = 0; l < nl && st == QD_OK; l++) {
            qd_qlinear *h = &heads[n];
            snprintf(h->name, sizeof h->name, "model.layers.%d.%s", b, lin[l].module);
            qd_qspec s;
            qd_recipe_resolve(k->o->q.recipe, &k->o->q.base, h->name, &s);
            if (s.skip || !lin[l].quantize) continue;
            int64_t N = lin[l].N, K = lin[l].K;
            size_t G;
            st = qd_qspec_groups(&s, h->name, (size_t)K, &G);
            h->N = (int)N, h->K = (int)K, h->G = (int)G;
            h->bits = s.bits, h->sym = s.sym, h->scheme = s.scheme;
            /* as qd_qresult_alloc records it: one group (K == group size) is -1, an FP8 block stays a block */
            h->group_size = G == 1 && s.scheme != QD_SCHEME_FP8_BLOCK ? -1 : s.group_size;
            nonseq[n] = s.method == QD_METHOD_GPTQ && s.act_order && !s.static_groups && G > 1;
            n++;
        }
    }
    free(lin);
    if (st != QD_OK) {
        free(heads);
        free(nonseq);
        return st;
    }
    *heads_out = heads, *nonseq_out = nonseq, *n_out = n;
    return QD_OK;
}

static void export_opts(const qd_run_opts *o, qd_export_opts *eo) {
    *eo = (qd_export_opts){.out_dir = o->output_dir, .overwrite = o->overwrite, .max_shard_bytes = o->max_shard_bytes};
}

qd_status qd_run_stream_begin(qd_run *k, const char *staging) {
    const qd_run_opts *o = k->o;
    const char *env = qd_param_str(QD_PARAM_EXPORT_STREAM);
    if (env && strcmp(env, "0") != 0 && strcmp(env, "1") != 0 && env[0])
        return qd_fail(QD_ERR_USAGE, "QD_EXPORT_STREAM=%s: expected 0 or 1 (docs/tunables.md)", env);
    if (strcmp(o->format, "fake") == 0 || (env && strcmp(env, "0") == 0)) return QD_OK;
    qd_export_opts eo;
    export_opts(o, &eo);
    QD_CHECK(qd_export_format_parse(o->format, &eo.format));
    char meta[4200];
    QD_CHECK(qd_path_join(meta, sizeof meta, staging, "meta"));
    QD_CHECK(qd_run_prepare_meta(o->model_dir, meta)); /* config.json and the files the export copies */
    qd_qrun run;
    qd_run_qrun(o, k->cfg, &run);
    qd_qlinear *heads;
    int *nonseq;
    size_t n;
    QD_CHECK(plan_heads(k, &heads, &nonseq, &n));
    qd_status st = qd_xstream_begin(&eo, staging, qd_model_ckpt(k->model), k->cfg->nlayers, meta, &run, heads, nonseq,
                                    n, &k->xs);
    free(heads);
    free(nonseq);
    return st;
}

void qd_run_stream_block(qd_run *k, qd_staged_block *b, void (*release)(qd_staged_block *b)) {
    if (k->xs) qd_xstream_block(k->xs, b, release);
    else release(b);
}

qd_status qd_run_stream_finish(qd_run *k, const char *staging, const char *meta, int *streamed) {
    *streamed = 0;
    if (!k->xs) return qd_run_export(k->o, k->model, staging, meta);
    int fallback = 0;
    qd_status st = qd_xstream_finish(k->xs, &fallback, streamed);
    k->xs = NULL;
    if (st == QD_OK && fallback) {
        *streamed = 0;
        st = qd_run_stage_tail(k, 1); /* the export after the run reads every block from the staging */
        if (st == QD_OK) st = qd_run_export(k->o, k->model, staging, meta);
    }
    return st;
}

void qd_run_stream_abort(qd_run *k) {
    qd_xstream_abort(k->xs);
    k->xs = NULL;
}

void qd_run_stream_report(cJSON *report, double tail_s, int streamed, int nblocks) {
    cJSON *tot = cJSON_GetObjectItemCaseSensitive(report, "totals");
    if (!tot) return;
    cJSON_AddNumberToObject(tot, "export_tail_s", tail_s);   /* the last block staged -> output committed */
    cJSON_AddNumberToObject(tot, "export_streamed_blocks", streamed); /* written during the run, from memory */
    qd_info("quantize: export tail %.2f s after the last block (%d of %d blocks written into the checkpoint "
            "during the run)", tail_s, streamed, nblocks);
}
