/* SPDX-License-Identifier: MIT */
#include "qd-quantize-run.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>

#include "qd-backends.h"
#include "qd-block-sources.h"
#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-export.h"
#include "qd-fs.h"
#include "qd-st-writer.h"
#include "qd-h5stage.h"
#include "qd-param.h"
#include "qd-qsource-stage.h"
#include "qd-phase.h"
#include "qd-replay.h"
#include "qd-stage-writer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* What the report says of one quantized module: kept by the rank that quantized it and gathered on
 * rank 0, so the report reads only resumed blocks back from the staging (plain data: sent as bytes). */
typedef struct {
    int block, rank, bits, group_size, sym;
    int64_t N, K;
    double loss, damp, time_s;
    char name[64], fallback[64];
} mod_rec;

/* Per-rank timings, gathered on rank 0 for the report (plain data: sent as bytes). */
typedef struct {
    double load_s, quant_s, replay_s, stage_s, fp_s, wait_s, total_s;
    double stage_write_s;       /* the writer thread's own time, overlapped with compute */
    int quantized, replayed;
    double phase[QD_PH_N];      /* seconds per phase (qd-phase.h) */
    double mem_budget;          /* bytes the run planned with (0: none given, host default rule) */
    double mem_reserved_peak;   /* the backend's own peak (0 on host backends) */
    double mem_used_peak;       /* device total - free, the most seen at block boundaries */
    int resident_path;          /* GPTQ: 1 when the one-forward resident path fits the budget */
} rank_times;

typedef struct {
    const qd_run_opts *o;
    const qd_model_cfg *cfg;
    qd_backend_t be;
    qd_checkpoint *ck;
    qd_qctx *ctx;
    qd_stage *stage;
    qd_stage_writer *writer; /* stages finished blocks on its own thread */
    mod_rec *recs;           /* the modules this rank quantized in this run */
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
    rank_times t;
} worker;

static qd_status load_block(worker *k, int b, qd_block_w *w) {
    qd_phase prev = qd_phase_set(k->be, QD_PH_READ);
    double t0 = now_s();
    qd_status st = qd_block_w_load(k->be, k->cfg, k->ck, b, w);
    qd_phase_set(k->be, prev);
    k->t.load_s += now_s() - t0;
    return st;
}

/* the device's memory in use, sampled at block boundaries (the backend's own peak is exact) */
static void sample_mem(worker *k) {
    struct qd_mem_info mi;
    if (qd_be_mem_info(k->be, &mi) != QD_OK || !mi.total) return;
    double used = (double)(mi.total - mi.free);
    if (used > k->t.mem_used_peak) k->t.mem_used_peak = used;
    k->t.mem_reserved_peak = (double)mi.reserved_peak;
}

/* RTN without calibration: no activations flow, every callback that moves them is a no-op */
static int no_calib(const worker *k) { return k->o->q.nseq * k->o->q.seq_len == 0; }

/* the embedded calibration tokens into the worker's activations on the device */
static qd_status w_embed_device(void *user) {
    worker *k = user;
    if (no_calib(k)) return QD_OK;
    size_t rows = k->o->q.nseq * k->o->q.seq_len;
    qd_phase prev = qd_phase_set(k->be, QD_PH_TRANSFER);
    QD_CHECK(qd_embed(k->be, &k->head, k->ids, rows, QD_REF(k->in, 0)));
    qd_phase_set(k->be, prev);
    return QD_OK;
}

static qd_status w_embed(void *user, float *act) {
    worker *k = user;
    if (no_calib(k)) return QD_OK;
    size_t rows = k->o->q.nseq * k->o->q.seq_len, H = (size_t)k->cfg->hidden;
    QD_CHECK(w_embed_device(user));
    qd_phase prev = qd_phase_set(k->be, QD_PH_TRANSFER);
    QD_CHECK(qd_be_download(k->be, &(struct qd_download_args){.src = QD_REF(k->in, 0), .dst = act, .n = rows * H}));
    qd_phase_set(k->be, prev);
    return QD_OK;
}

static qd_status w_load(void *user, const float *act) {
    worker *k = user;
    if (no_calib(k)) return QD_OK;
    size_t n = k->o->q.nseq * k->o->q.seq_len * (size_t)k->cfg->hidden;
    qd_phase prev = qd_phase_set(k->be, QD_PH_TRANSFER);
    QD_CHECK(qd_be_upload(k->be, &(struct qd_upload_args){.dst = QD_REF(k->in, 0), .src = act, .src_dtype = QD_DT_F32,
                                                           .n = n}));
    qd_phase_set(k->be, prev);
    return QD_OK;
}

static qd_status w_store(void *user, float *act) {
    worker *k = user;
    if (no_calib(k)) return QD_OK;
    size_t n = k->o->q.nseq * k->o->q.seq_len * (size_t)k->cfg->hidden;
    qd_phase prev = qd_phase_set(k->be, QD_PH_TRANSFER);
    QD_CHECK(qd_be_download(k->be, &(struct qd_download_args){.src = QD_REF(k->in, 0), .dst = act, .n = n}));
    qd_phase_set(k->be, prev);
    return QD_OK;
}

static qd_status w_forward_fp(void *user, int b, float *act, size_t nseq) {
    worker *k = user;
    double t0 = now_s();
    size_t n = nseq * k->o->q.seq_len * (size_t)k->cfg->hidden;
    qd_block_w w = {0};
    qd_status st;
    QD_CHECK_GOTO(load_block(k, b, &w), st, out);
    qd_phase_set(k->be, QD_PH_TRANSFER);
    QD_CHECK_GOTO(qd_be_upload(k->be, &(struct qd_upload_args){.dst = QD_REF(k->fp_buf, 0), .src = act,
                                                               .src_dtype = QD_DT_F32, .n = n}),
                  st, out);
    qd_phase_set(k->be, QD_PH_FORWARD);
    QD_CHECK_GOTO(qd_block_forward(k->fp_fwd, &(struct qd_block_fwd_args){.w = &w, .x = QD_REF(k->fp_buf, 0),
                                                                          .out = QD_REF(k->fp_buf, 0), .nseq = nseq,
                                                                          .stop_after = -1}),
                  st, out);
    qd_phase_set(k->be, QD_PH_TRANSFER);
    st = qd_be_download(k->be, &(struct qd_download_args){.src = QD_REF(k->fp_buf, 0), .dst = act, .n = n});
out:
    qd_block_w_free(&w);
    qd_phase_set(k->be, QD_PH_OTHER);
    k->t.fp_s += now_s() - t0;
    return st;
}

/* The tensors of a block other than quantized Linear weights, as they are on the device after
 * quantization (AWQ rescales norms and biases): staged so the export writes what the codes assume. */
static qd_status stage_tensor(worker *k, qd_staged_block *sb, int b, const char *module, qd_buf_t buf) {
    if (!buf) return QD_OK;
    qd_staged_tensor *t = &sb->tensors[sb->ntensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "model.layers.%d.%s", b, module);
    size_t n = qd_buf_len(buf);
    t->ndim = 1;
    t->shape[0] = (int64_t)n;
    t->data = malloc(n * sizeof(float) + 1);
    if (!t->data) return qd_fail(QD_ERR_NOMEM, "%s: out of memory staging", t->name);
    sb->ntensors++;
    return qd_be_download(k->be, &(struct qd_download_args){.src = QD_REF(buf, 0), .dst = t->data, .n = n});
}

static qd_status keep_record(worker *k, int b, qd_lin l, const qd_qlayer *q, const qd_qresult *r) {
    if (k->nrecs == k->caprecs) {
        size_t nc = k->caprecs ? 2 * k->caprecs : 64;
        mod_rec *t = realloc(k->recs, nc * sizeof *t);
        if (!t) return qd_fail(QD_ERR_NOMEM, "block %d: out of memory for the report", b);
        k->recs = t, k->caprecs = nc;
    }
    mod_rec *m = &k->recs[k->nrecs++];
    memset(m, 0, sizeof *m);
    *m = (mod_rec){.block = b, .rank = qd_mpi_rank(), .bits = q->bits, .group_size = q->group_size, .sym = q->sym,
                   .N = q->N, .K = q->K, .loss = r->s.loss, .damp = r->s.damp, .time_s = r->s.seconds};
    snprintf(m->name, sizeof m->name, "%s", qd_lin_name(l));
    snprintf(m->fallback, sizeof m->fallback, "%.63s", r->s.fallback);
    return QD_OK;
}

/* everything a staged block owns: the arrays taken from the results, the tensors, the block itself */
static void release_staged(qd_staged_block *sb) {
    if (!sb) return;
    for (size_t i = 0; sb->modules && i < sb->nmodules; i++) {
        qd_qlinear_free(&sb->modules[i].q);
    }
    for (size_t i = 0; sb->tensors && i < sb->ntensors; i++) free(sb->tensors[i].data);
    free(sb->tensors);
    free(sb->modules);
    free(sb->sources);
    free(sb);
}

/* Hands block b to the staging writer (qd-stage-writer.h), taking the arrays of res (left NULL) and
 * the text of its source hashes (*sources, left NULL). */
static qd_status stage_block(worker *k, int b, const qd_block_w *w, qd_qresult *res, char **sources, double seconds) {
    qd_phase prev = qd_phase_set(k->be, QD_PH_STAGING);
    qd_staged_block *sb = calloc(1, sizeof *sb);
    qd_status st = QD_OK;
    if (!sb) {
        st = qd_fail(QD_ERR_NOMEM, "block %d: out of memory staging", b);
        goto out;
    }
    *sb = (qd_staged_block){.block = b, .rank = qd_mpi_rank(), .time_s = seconds, .sources = *sources};
    *sources = NULL;
    sb->modules = calloc(QD_NLIN, sizeof *sb->modules);
    sb->tensors = calloc(4 + 2 * QD_NLIN, sizeof *sb->tensors);
    if (!sb->modules || !sb->tensors) {
        st = qd_fail(QD_ERR_NOMEM, "block %d: out of memory staging", b);
        goto out;
    }
    char name[256];
    for (int l = 0; l < QD_NLIN; l++) {
        qd_qlayer *q = &res[l].q;
        if (!q->codes) {
            /* left unquantized (recipe skip): its weight as the run leaves it */
            snprintf(name, sizeof name, "%s.weight", qd_lin_name((qd_lin)l));
            QD_CHECK_GOTO(stage_tensor(k, sb, b, name, w->w[l]), st, out);
            sb->tensors[sb->ntensors - 1].ndim = 2;
            sb->tensors[sb->ntensors - 1].shape[0] = (int64_t)w->n_out[l];
            sb->tensors[sb->ntensors - 1].shape[1] = (int64_t)w->n_in[l];
        } else {
            QD_CHECK_GOTO(keep_record(k, b, (qd_lin)l, q, &res[l]), st, out);
            qd_staged_module *m = &sb->modules[sb->nmodules++];
            *m = (qd_staged_module){.q = *q, .s = res[l].s}; /* the arrays are now the block's */
            *q = qd_qlinear_header(q);
            snprintf(m->q.name, sizeof m->q.name, "%s", qd_lin_name((qd_lin)l)); /* staged names are block-relative */
        }
        snprintf(name, sizeof name, "%s.bias", qd_lin_name((qd_lin)l));
        QD_CHECK_GOTO(stage_tensor(k, sb, b, name, w->b[l]), st, out);
    }
    QD_CHECK_GOTO(stage_tensor(k, sb, b, "input_layernorm.weight", w->ln_in), st, out);
    QD_CHECK_GOTO(stage_tensor(k, sb, b, "post_attention_layernorm.weight", w->ln_post), st, out);
    QD_CHECK_GOTO(stage_tensor(k, sb, b, "self_attn.q_norm.weight", w->q_norm), st, out);
    QD_CHECK_GOTO(stage_tensor(k, sb, b, "self_attn.k_norm.weight", w->k_norm), st, out);
    double t0 = now_s();
    st = qd_stage_writer_submit(k->writer, sb, release_staged); /* waits for the previous block's write */
    sb = NULL;
    k->t.stage_s += now_s() - t0;
out:
    release_staged(sb);
    qd_phase_set(k->be, prev);
    return st;
}

static qd_status w_quantize(void *user, int b) {
    worker *k = user;
    double t0 = now_s();
    qd_block_w w = {0};
    qd_qresult res[QD_NLIN];
    memset(res, 0, sizeof res);
    char *sources = NULL;
    qd_status st;
    QD_CHECK_GOTO(load_block(k, b, &w), st, out);
    /* the bytes the load just read, hashed while their pages are hot (qd-block-sources.h) */
    QD_CHECK_GOTO(qd_block_sources(k->cfg, k->ck, b, &sources), st, out);
    QD_CHECK_GOTO(qd_quantize_block(k->ctx, &w, k->in, k->out, res), st, out);
    /* a scale the checkpoint cannot hold is refused now, not after the whole run at export */
    for (int l = 0; l < QD_NLIN; l++) {
        if (!res[l].q.codes) continue;
        QD_CHECK_GOTO(qd_qlinear_check_scales(&res[l].q, k->store_dt, k->o->format), st, out);
        QD_CHECK_GOTO(qd_qlinear_check_scales(&res[l].q, k->o->q.scale_dtype, "--scale-dtype"), st, out);
    }
    QD_CHECK_GOTO(stage_block(k, b, &w, res, &sources, now_s() - t0), st, out);
    if (no_calib(k)) goto out;
    /* k->out already holds what a resumed run's replay computes (qd-replay.h): the same forward ops
     * on the same chunks with the same installed weights (GPTQ/RTN), or the unmodified block's
     * forward (AWQ's full-precision chain). Recomputing it would cost one more forward per block. */
    qd_buf_t t = k->in;
    k->in = k->out, k->out = t;
out:
    free(sources);
    for (int l = 0; l < QD_NLIN; l++) qd_qresult_free(&res[l]);
    qd_block_w_free(&w);
    sample_mem(k);
    k->t.quant_s += now_s() - t0;
    return st;
}

/* A staged block's source tensors as they are now against the hashes staged with it: a --resume
 * never mixes blocks quantized from weights that were since changed in place with new ones. */
static qd_status check_sources(worker *k, int b, const qd_staged_block *sb) {
    char *now = NULL;
    QD_CHECK(qd_block_sources(k->cfg, k->ck, b, &now));
    qd_status st = qd_block_sources_check(k->ck, b, sb->sources, now, qd_stage_dir(k->stage));
    free(now);
    return st;
}

/* RTN without calibration hands nothing on, so the block is not replayed; its sources are checked */
static qd_status check_staged_only(worker *k, int b) {
    qd_staged_block *sb = NULL;
    qd_status st = qd_stage_writer_flush(k->writer);
    if (st == QD_OK) st = qd_stage_read_block(k->stage, b, &sb);
    if (st == QD_OK) st = check_sources(k, b, sb);
    qd_staged_block_free(sb);
    return st;
}

static qd_status w_replay(void *user, int b) {
    worker *k = user;
    if (no_calib(k)) return check_staged_only(k, b);
    double t0 = now_s();
    qd_block_w w = {0};
    qd_staged_block *sb = NULL;
    qd_qresult res[QD_NLIN];
    memset(res, 0, sizeof res);
    qd_status st;
    QD_CHECK_GOTO(load_block(k, b, &w), st, out);
    qd_phase prev = qd_phase_set(k->be, QD_PH_STAGING);
    st = qd_stage_writer_flush(k->writer); /* HDF5 is single-threaded: no read while a write is in flight */
    if (st == QD_OK) st = qd_stage_read_block(k->stage, b, &sb);
    qd_phase_set(k->be, prev);
    if (st != QD_OK) goto out;
    QD_CHECK_GOTO(check_sources(k, b, sb), st, out);
    for (size_t i = 0; i < sb->nmodules; i++) {
        qd_staged_module *m = &sb->modules[i];
        int l = -1;
        for (int j = 0; j < QD_NLIN; j++)
            if (strcmp(m->q.name, qd_lin_name((qd_lin)j)) == 0) l = j;
        if (l < 0) {
            st = qd_fail(QD_ERR_FORMAT, "%s/block-%05d.h5: unknown module '%s'", qd_stage_dir(k->stage), b, m->q.name);
            goto out;
        }
        qd_qlayer *q = &res[l].q;
        *q = m->q; /* borrows the staged arrays; sb owns them */
        snprintf(q->name, sizeof q->name, "model.layers.%d.%.200s", b, m->q.name);
    }
    st = qd_block_replay(k->ctx, &w, res, k->in, k->out);
    if (st == QD_OK) {
        qd_buf_t t = k->in;
        k->in = k->out, k->out = t;
    }
out:
    qd_staged_block_free(sb);
    qd_block_w_free(&w);
    k->t.replay_s += now_s() - t0;
    return st;
}

static int w_is_staged(void *user, int b) { return qd_stage_has_block(((worker *)user)->stage, b); }

static qd_status w_flush(void *user) {
    worker *k = user;
    qd_phase prev = qd_phase_set(k->be, QD_PH_STAGING);
    qd_status st = qd_stage_writer_flush(k->writer);
    qd_phase_set(k->be, prev);
    return st;
}

/* The memory budget (--gpu-mem, else most of the device's free memory; host backends without the
 * flag keep the driver's 6 GiB rule) decides what stays resident: GPTQ's one-forward resident path is
 * taken when its caches fit beside the activations and the driver's working set. */
static qd_status plan_memory(worker *k, qd_quantize_opts *q) {
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

/* ---- set-up shared by every rank ---- */

static qd_status make_plan(const qd_run_opts *o, const qd_model_cfg *cfg, qd_plan *plan) {
    qd_status st = QD_OK;
    if (qd_mpi_rank() == 0) {
        qd_checkpoint *ck = NULL;
        uint64_t *cost = calloc((size_t)cfg->nlayers + 1, sizeof *cost);
        if (!cost) st = qd_fail(QD_ERR_NOMEM, "plan: out of memory");
        if (st == QD_OK) st = qd_ckpt_open(o->model_dir, 0, &ck);
        for (size_t i = 0; st == QD_OK && i < ck->ntensors; i++) {
            int b = -1;
            if (qd_model_classify(cfg, ck->tensors[i]->name, &b, NULL, 0) == QD_PART_BLOCK && b >= 0)
                cost[b] += ck->tensors[i]->nbytes;
        }
        if (st == QD_OK) st = qd_plan_make(cfg->nlayers, cost, 0, 0, qd_mpi_size(), plan);
        qd_ckpt_close(ck);
        free(cost);
    }
    QD_CHECK(qd_mpi_agree(st));
    return qd_mpi_bcast(plan, sizeof *plan);
}

static qd_status fingerprint(const qd_run_opts *o, const qd_plan *plan, qd_fingerprint *fpr) {
    const qd_qspec *s = &o->q.base;
    char buf[512];
    QD_CHECK(qd_fingerprint_add(fpr, "qdist_version", QD_VERSION));
    QD_CHECK(qd_fingerprint_add_model(fpr, o->model_dir));
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
    if (o->schedule == QD_SCHED_OVERLAP) {
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

static qd_status open_staging(const qd_run_opts *o, const char *dir, const qd_fingerprint *fpr, qd_stage **out) {
    qd_status st = QD_OK;
    if (qd_mpi_rank() == 0) st = qd_stage_open(dir, fpr, o->resume, out);
    QD_CHECK(qd_mpi_agree(st));
    if (qd_mpi_rank() != 0) QD_CHECK(qd_mpi_agree(qd_stage_attach(dir, fpr, out)));
    else QD_CHECK(qd_mpi_agree(QD_OK));
    return QD_OK;
}

/* The device this rank computes on. With no device named, the ranks of a node take one GPU each, by
 * node-local rank (round-robin when ranks outnumber GPUs; QD_GPUS_PER_NODE caps the GPUs used);
 * *share counts this node's ranks on the same GPU, which split its memory budget (plan_memory). */
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
static qd_status neighbour_probes(const qd_backend_spec *be, struct qd_transport_probe *to_prev,
                                  struct qd_transport_probe *to_next) {
    int rank = qd_mpi_rank(), size = qd_mpi_size(), lr, nlocal, node;
    int gpu = qd_backend_spec_is_gpu(be);
    struct qd_transport_probe p = {.rank = rank, .backend_is_gpu = gpu,
                                   .device_buffers = qd_pipeline_device_buffers()};
    *to_prev = *to_next = p;
    to_prev->peer = rank - 1, to_next->peer = rank + 1;
    if (size <= 1) return QD_OK;
    qd_mpi_node(&lr, &nlocal, &node);
    int mine[2] = {node, gpu ? (be->device == QD_DEVICE_ANY ? 0 : be->device) : -1};
    int *all = malloc((size_t)size * sizeof mine);
    if (!all) return qd_fail(QD_ERR_NOMEM, "quantize: out of memory");
    qd_status st = qd_mpi_allgather(mine, sizeof mine, all);
    if (st == QD_OK && rank > 0)
        to_prev->same_device = gpu && all[2 * (rank - 1)] == node && all[2 * (rank - 1) + 1] == mine[1];
    if (st == QD_OK && rank < size - 1)
        to_next->same_device = gpu && all[2 * (rank + 1)] == node && all[2 * (rank + 1) + 1] == mine[1];
    free(all);
    return st;
}

static qd_status broadcast_calib(const qd_run_opts *o, int32_t **ids_out, char sha[65], size_t *nseq,
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

/* ---- rank 0's report and export ---- */

/* every rank's module records to rank 0 (in rank order, so each block's modules stay in order) */
static qd_status gather_records(const worker *k, mod_rec **out, size_t *nout) {
    int size = qd_mpi_size(), rank = qd_mpi_rank();
    *out = NULL, *nout = 0;
    if (size == 1) {
        if (!k->nrecs) return QD_OK;
        QD_ALLOC(*out, k->nrecs);
        memcpy(*out, k->recs, k->nrecs * sizeof **out);
        *nout = k->nrecs;
        return QD_OK;
    }
    int mine = (int)(k->nrecs * sizeof *k->recs), *counts = NULL, *displs = NULL;
    qd_status st = QD_OK;
    if (rank == 0) {
        counts = calloc((size_t)size, sizeof *counts), displs = calloc((size_t)size, sizeof *displs);
        if (!counts || !displs) st = qd_fail(QD_ERR_NOMEM, "report: out of memory");
    }
    if (MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS && st == QD_OK)
        st = qd_fail(QD_ERR_MPI, "quantize: gathering the module records failed");
    size_t total = 0;
    if (rank == 0 && counts && displs)
        for (int r = 0; r < size; r++) displs[r] = (int)total, total += (size_t)counts[r];
    char *buf = rank == 0 && total ? malloc(total) : NULL;
    if (rank == 0 && total && !buf && st == QD_OK) st = qd_fail(QD_ERR_NOMEM, "report: out of memory");
    /* every rank takes part in the collective even after a local failure; rank 0 reports it */
    if (MPI_Gatherv(k->recs, mine, MPI_BYTE, buf, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS &&
        st == QD_OK)
        st = qd_fail(QD_ERR_MPI, "quantize: gathering the module records failed");
    free(counts), free(displs);
    if (st != QD_OK) {
        free(buf);
        return st;
    }
    *out = (mod_rec *)buf;
    *nout = total / sizeof(mod_rec);
    return QD_OK;
}



static cJSON *phases_json(cJSON *parent, const double *ph) {
    cJSON *j = cJSON_AddObjectToObject(parent, "phases_s");
    for (int i = 0; j && i < QD_PH_N; i++) cJSON_AddNumberToObject(j, qd_phase_name((qd_phase)i), ph[i]);
    return j;
}

static void memory_json(cJSON *parent, const rank_times *t) {
    cJSON *m = cJSON_AddObjectToObject(parent, "memory");
    if (!m) return;
    cJSON_AddNumberToObject(m, "budget_bytes", t->mem_budget);
    cJSON_AddNumberToObject(m, "backend_peak_bytes", t->mem_reserved_peak);
    cJSON_AddNumberToObject(m, "device_used_peak_bytes", t->mem_used_peak);
    cJSON_AddBoolToObject(m, "gptq_resident_path", t->resident_path);
}

/* The report as a cJSON tree (the caller saves it, and may update the totals after the export). */
static qd_status build_report(const qd_run_opts *o, const qd_stage *stage, int nblocks, const qd_plan *plan,
                              const rank_times *all, const mod_rec *recs, size_t nrecs, double wall, cJSON **out) {
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
    cJSON_AddStringToObject(set, "schedule", o->schedule == QD_SCHED_EXACT ? "exact" : "overlap");
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
        /* modules quantized in this run come from the ranks' records; resumed blocks from the staging */
        size_t nhere = 0;
        for (size_t i = 0; i < nrecs; i++) nhere += recs[i].block == b;
        qd_staged_block *sb = NULL;
        if (!nhere) {
            qd_status st = qd_stage_read_block(stage, b, &sb);
            if (st != QD_OK) {
                cJSON_Delete(root), cJSON_Delete(mods), cJSON_Delete(ranks);
                return st;
            }
        }
        size_t n = sb ? sb->nmodules : nrecs;
        for (size_t i = 0; i < n; i++) {
            mod_rec r;
            if (sb) {
                const qd_staged_module *m = &sb->modules[i];
                r = (mod_rec){.block = b, .rank = sb->rank, .bits = m->q.bits, .group_size = m->q.group_size,
                              .sym = m->q.sym, .N = m->q.N, .K = m->q.K, .loss = m->s.loss, .damp = m->s.damp,
                              .time_s = m->s.seconds};
                snprintf(r.name, sizeof r.name, "%.63s", m->q.name);
                snprintf(r.fallback, sizeof r.fallback, "%.63s", m->s.fallback);
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
            cJSON_AddNumberToObject(j, "N", (double)r.N);
            cJSON_AddNumberToObject(j, "K", (double)r.K);
            cJSON_AddNumberToObject(j, "loss", r.loss);
            if (r.damp >= 0) cJSON_AddNumberToObject(j, "damp", r.damp);
            else cJSON_AddNullToObject(j, "damp");
            if (r.fallback[0]) cJSON_AddStringToObject(j, "fallback", r.fallback);
            else cJSON_AddNullToObject(j, "fallback");
            cJSON_AddNumberToObject(j, "calib_tokens", (double)(o->q.nseq * o->q.seq_len));
            cJSON_AddNumberToObject(j, "seconds", r.time_s);
            cJSON_AddNumberToObject(j, "rank", r.rank);
            cJSON_AddItemToObject(mods, name, j);
            loss += r.loss;
            nq++;
            nfb += r.fallback[0] != 0;
        }
        qd_staged_block_free(sb);
    }
    cJSON_AddItemToObject(root, "modules", mods);
    for (int r = 0; r < plan->nranks; r++) {
        const rank_times *t = &all[r];
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

static qd_status save_report(cJSON *root, const char *dir) {
    char *text = cJSON_Print(root);
    if (!text) return qd_fail(QD_ERR_NOMEM, "report: out of memory");
    char path[4400];
    qd_status st = qd_path_join(path, sizeof path, dir, "qdist_report.json");
    if (st == QD_OK) st = qd_write_file_atomic(path, text, strlen(text));
    cJSON_free(text);
    return st;
}

/* after the export: rank 0's write phase and the wall time, into the copy in the output directory */
static qd_status finish_report(cJSON *root, double report_s, double export_s, double wall, const char *out_dir) {
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
    return save_report(root, out_dir);
}

static qd_status prepare_meta(const char *model_dir, const char *meta) {
    QD_CHECK(qd_mkdir_p(meta));
    return qd_model_copy_meta_files(model_dir, meta);
}

static qd_status export_from_staging(const qd_run_opts *o, const qd_model_cfg *cfg, const char *staging,
                                     const char *meta) {
    qd_export_opts eo = {.out_dir = o->output_dir, .overwrite = o->overwrite, .max_shard_bytes = o->max_shard_bytes};
    QD_CHECK(qd_export_format_parse(o->format, &eo.format));
    qd_qrun run = {.act_order = o->q.base.act_order, .static_groups = o->q.base.static_groups,
                   .true_sequential = o->q.true_sequential,
                   .damp = o->q.base.method == QD_METHOD_GPTQ ? o->q.base.damp : -1,
                   .scales_rounded = 1, .scale_dtype = o->q.scale_dtype};
    snprintf(run.method, sizeof run.method, "%s", qd_method_name(o->q.base.method));
    qd_qsource src;
    QD_CHECK(qd_qsource_open_stage(staging, o->model_dir, cfg->nlayers, meta, &run, &src));
    qd_status st = qd_export_run(&eo, &src);
    qd_qsource_close(&src);
    return st;
}

/* Refuse before any work when the format cannot express the scheme, a group size does not divide a
 * Linear's input features, or the output exists. */
static qd_status preflight(const qd_run_opts *o, const qd_model_cfg *cfg) {
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
static qd_status check_space(const qd_run_opts *o, const qd_model_cfg *cfg, const char *staging) {
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

qd_status qd_quantize_run(const qd_run_opts *o) {
    double t0 = now_s();
    int rank = qd_mpi_rank(), size = qd_mpi_size();
    qd_model_cfg cfg;
    qd_plan *plan = calloc(1, sizeof *plan);
    if (!plan) return qd_fail(QD_ERR_NOMEM, "quantize: out of memory");
    worker k = {.o = o, .cfg = &cfg};
    qd_fingerprint fpr = {0};
    qd_transport *prev = NULL, *next = NULL;
    qd_progress *prog = NULL;
    int32_t *ids = NULL;
    char sha[65], staging[4096], meta[4200], be_name[64];
    qd_backend_spec be_spec;
    int failed_block = -1, in_pipeline = 0, staging_existed = 1;
    qd_status st;

    QD_CHECK_GOTO(qd_model_cfg_load(o->model_dir, &cfg), st, fail);
    k.store_dt = strcmp(o->format, "compressed-tensors") == 0 ? cfg.dtype : QD_DT_F16;
    QD_CHECK_GOTO(qd_mpi_agree(rank == 0 ? preflight(o, &cfg) : QD_OK), st, fail);
    if (cfg.quantized) {
        st = qd_fail(QD_ERR_UNSUPPORTED, "%s: the model is already quantized (%s)", o->model_dir, cfg.quant_method);
        goto fail;
    }
    QD_CHECK_GOTO(make_plan(o, &cfg, plan), st, fail);
    qd_run_opts ro = *o; /* every rank now knows the calibration */
    QD_CHECK_GOTO(broadcast_calib(o, &ids, sha, &ro.q.nseq, &ro.q.seq_len), st, fail);
    ro.calib_sha256 = sha[0] ? sha : NULL;
    k.o = &ro;
    k.ids = ids;
    if (o->staging_dir) snprintf(staging, sizeof staging, "%s", o->staging_dir);
    else snprintf(staging, sizeof staging, "%s.qdist-staging", o->output_dir);
    QD_CHECK_GOTO(qd_mpi_agree(rank == 0 ? check_space(&ro, &cfg, staging) : QD_OK), st, fail);
    QD_CHECK_GOTO(fingerprint(&ro, plan, &fpr), st, fail);
    staging_existed = qd_path_exists(staging) && !qd_dir_is_empty(staging);
    QD_CHECK_GOTO(open_staging(&ro, staging, &fpr, &k.stage), st, fail);
    QD_CHECK_GOTO(qd_stage_writer_start(k.stage, &k.writer), st, fail);

    map_device(&o->backend, &be_spec, &k.dev_share);
    qd_backend_spec_name(&be_spec, be_name, sizeof be_name);
    QD_CHECK_GOTO(qd_backend_open(&be_spec, &k.be), st, fail);
    qd_phase_reset();
    QD_CHECK_GOTO(qd_ckpt_open(o->model_dir, 1, &k.ck), st, fail);
    QD_CHECK_GOTO(plan_memory(&k, &ro.q), st, fail);
    QD_CHECK_GOTO(qd_qctx_create(k.be, &cfg, &ro.q, &k.ctx), st, fail);
    size_t rows = ro.q.nseq * ro.q.seq_len, H = (size_t)cfg.hidden;
    size_t micro = o->micro_batch ? o->micro_batch : 8;
    if (micro > ro.q.nseq && ro.q.nseq) micro = ro.q.nseq;
    if (rows) {
        QD_CHECK_GOTO(qd_buf_alloc(k.be, rows * H, &k.in), st, fail);
        QD_CHECK_GOTO(qd_buf_alloc(k.be, rows * H, &k.out), st, fail);
        if (rank == 0) {
            QD_CHECK_GOTO(qd_head_load(k.be, &cfg, k.ck, 0, &k.head), st, fail);
            k.have_head = 1;
        }
        if (o->schedule == QD_SCHED_OVERLAP && rank < size - 1) {
            QD_CHECK_GOTO(qd_fwd_create(k.be, &cfg, ro.q.seq_len, micro, &k.fp_fwd), st, fail);
            QD_CHECK_GOTO(qd_buf_alloc(k.be, micro * ro.q.seq_len * H, &k.fp_buf), st, fail);
        }
    }
    struct qd_transport_probe to_prev, to_next;
    QD_CHECK_GOTO(neighbour_probes(&be_spec, &to_prev, &to_next), st, fail);
    if (rank > 0) QD_CHECK_GOTO(qd_transport_select(&to_prev, &prev), st, fail);
    if (rank < size - 1) QD_CHECK_GOTO(qd_transport_select(&to_next, &next), st, fail);
    if (rank == 0)
        qd_info("quantize: %d blocks over %d rank%s (%s schedule, backend %s), staging %s", cfg.nlayers, size,
                size > 1 ? "s" : "", o->schedule == QD_SCHED_EXACT ? "exact" : "overlap", be_name, staging);
    if (rank == 0) QD_CHECK_GOTO(qd_progress_start(staging, plan, (double)rows, o->progress, &prog), st, fail);

    struct qd_block_worker wk = {.user = &k, .nseq = ro.q.nseq, .seq_elems = ro.q.seq_len * H, .micro_batch = micro,
                                 .embed = w_embed, .embed_device = w_embed_device, .forward_fp = w_forward_fp, .load = w_load, .store = w_store,
                                 .quantize = w_quantize, .replay = w_replay, .is_staged = w_is_staged,
                                 .flush = w_flush};
    struct qd_pipeline_stats ps;
    in_pipeline = 1; /* from here a failing rank must end the job: its neighbours may be waiting on it */
    st = qd_pipeline_run(plan, rank, o->schedule, &wk, prev, next, &ps, &failed_block);
    if (st == QD_OK) st = w_flush(&k); /* every block of this rank on disk before the report reads them */
    if (st != QD_OK) goto fail;
    k.t.stage_write_s = qd_stage_writer_busy_s(k.writer);
    k.t.wait_s = ps.wait_s;
    k.t.quantized = ps.quantized;
    k.t.replayed = ps.replayed;
    k.t.total_s = now_s() - t0;
    sample_mem(&k);
    qd_phase_totals(k.be, k.t.phase);

    /* every rank's timings to rank 0, then the report and the export */
    rank_times *all = calloc((size_t)size, sizeof *all);
    if (!all) {
        st = qd_fail(QD_ERR_NOMEM, "quantize: out of memory");
        goto fail;
    }
    if (size > 1) {
        if (MPI_Gather(&k.t, sizeof k.t, MPI_BYTE, all, sizeof k.t, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
            free(all);
            st = qd_fail(QD_ERR_MPI, "quantize: gathering the timings failed");
            goto fail;
        }
    } else {
        all[0] = k.t;
    }
    mod_rec *recs = NULL;
    size_t nrecs = 0;
    st = gather_records(&k, &recs, &nrecs);
    if (st != QD_OK) {
        free(all);
        goto fail;
    }
    qd_progress_stop(prog);
    prog = NULL;
    if (rank == 0) {
        st = qd_path_join(meta, sizeof meta, staging, "meta");
        if (st == QD_OK) st = prepare_meta(o->model_dir, meta);
        double tw = now_s(), te = 0;
        cJSON *report = NULL;
        if (st == QD_OK) st = build_report(&ro, k.stage, cfg.nlayers, plan, all, recs, nrecs, now_s() - t0, &report);
        if (st == QD_OK) st = save_report(report, meta);
        double tr = now_s() - tw;
        if (st == QD_OK) {
            st = export_from_staging(&ro, &cfg, staging, meta);
            /* every block is staged: say how to export them without quantizing again (a plain rerun,
             * --overwrite included, refuses the non-empty staging) */
            if (st != QD_OK)
                qd_warn("quantize: all %d blocks stay staged in %s: rerun with --resume (same model, settings and "
                        "recipe; --format may change) to export them without quantizing again, or remove %s to "
                        "start over", cfg.nlayers, staging, staging);
        }
        te = now_s() - tw - tr;
        if (st == QD_OK) st = finish_report(report, tr, te, now_s() - t0, o->output_dir);
        cJSON_Delete(report);
        if (st == QD_OK) {
            int quantized = 0, replayed = 0;
            for (int r = 0; r < size; r++) quantized += all[r].quantized, replayed += all[r].replayed;
            qd_info("quantize: %d blocks (%d quantized now, %d resumed from staging) in %.1f s -> %s", cfg.nlayers,
                    quantized, cfg.nlayers - quantized, now_s() - t0, o->output_dir);
            (void)replayed;
            if (!o->keep_staging) st = qd_stage_remove(staging); /* only what qdist wrote there */
        }
    }
    free(all);
    free(recs);
    in_pipeline = 0; /* rank 0's export failure is agreed on below: every rank exits cleanly */
    st = qd_mpi_agree(st);

fail:
    qd_progress_stop(prog);
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
    qd_buf_free(k.in);
    qd_buf_free(k.out);
    qd_buf_free(k.fp_buf);
    qd_fwd_free(k.fp_fwd);
    if (k.have_head) qd_head_free(&k.head);
    qd_qctx_free(k.ctx);
    qd_ckpt_close(k.ck);
    if (k.be) qd_be_free(k.be);
    qd_stage_close(k.stage);
    qd_fingerprint_free(&fpr);
    free(k.recs);
    free(ids);
    free(plan);
    return st;
}
