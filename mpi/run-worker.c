/* SPDX-License-Identifier: MIT
 * run-worker.c - the per-block worker the pipeline drives (qd-pipeline.h): load, quantize, stage,
 * replay a staged block, and the activations kept on the device between blocks.
 */
#include "run-internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-block-sources.h"
#include "qd-bootstrap.h"
#include "qd-check.h"
#include "qd-param.h"
#include "qd-replay.h"

static qd_status load_block(qd_run *k, int b, qd_block_w *w) {
    qd_phase prev = qd_phase_set(k->be, QD_PH_READ);
    double t0 = qd_clock_s();
    qd_status st = qd_model_block_load(k->be, k->model, b, w);
    qd_model_block_prefetch(k->model, b + 1); /* read from disk while block b computes */
    qd_phase_set(k->be, prev);
    k->t.load_s += qd_clock_s() - t0;
    return st;
}

/* the device's memory in use, sampled at block boundaries (the backend's own peak is exact) */
void qd_run_sample_mem(qd_run *k) {
    struct qd_mem_info mi;
    if (qd_be_mem_info(k->be, &mi) != QD_OK || !mi.total) return;
    double used = (double)(mi.total - mi.free);
    if (used > k->t.mem_used_peak) k->t.mem_used_peak = used;
    k->t.mem_reserved_peak = (double)mi.reserved_peak;
}

/* RTN without calibration: no activations flow, every callback that moves them is a no-op */
static int no_calib(const qd_run *k) { return k->o->q.nseq * k->o->q.seq_len == 0; }

/* the embedded calibration tokens into the worker's activations on the device */
static qd_status w_embed_device(void *user) {
    qd_run *k = user;
    if (no_calib(k) || !k->nseq_local) return QD_OK;
    size_t rows = k->nseq_local * k->o->q.seq_len; /* this rank's sequences (data-parallel: its share) */
    qd_phase prev = qd_phase_set(k->be, QD_PH_TRANSFER);
    QD_CHECK(qd_embed(k->be, &k->head, k->ids + k->seq0 * k->o->q.seq_len, rows, QD_REF(k->in, 0)));
    qd_phase_set(k->be, prev);
    return QD_OK;
}

static qd_status w_embed(void *user, float *act) {
    qd_run *k = user;
    if (no_calib(k)) return QD_OK;
    size_t rows = k->o->q.nseq * k->o->q.seq_len, H = (size_t)k->cfg->hidden;
    QD_CHECK(w_embed_device(user));
    qd_phase prev = qd_phase_set(k->be, QD_PH_TRANSFER);
    QD_CHECK(qd_be_download(k->be, &(struct qd_download_args){.src = QD_REF(k->in, 0), .dst = act, .n = rows * H}));
    qd_phase_set(k->be, prev);
    return QD_OK;
}

static qd_status w_load(void *user, const float *act) {
    qd_run *k = user;
    if (no_calib(k) || !k->nseq_local) return QD_OK;
    size_t n = k->nseq_local * k->o->q.seq_len * (size_t)k->cfg->hidden; /* this rank's sequences */
    qd_phase prev = qd_phase_set(k->be, QD_PH_TRANSFER);
    QD_CHECK(qd_be_upload(k->be, &(struct qd_upload_args){.dst = QD_REF(k->in, 0), .src = act, .src_dtype = QD_DT_F32,
                                                           .n = n}));
    qd_phase_set(k->be, prev);
    return QD_OK;
}

static qd_status w_store(void *user, float *act) {
    qd_run *k = user;
    if (no_calib(k) || !k->nseq_local) return QD_OK;
    size_t n = k->nseq_local * k->o->q.seq_len * (size_t)k->cfg->hidden; /* this rank's sequences */
    qd_phase prev = qd_phase_set(k->be, QD_PH_TRANSFER);
    QD_CHECK(qd_be_download(k->be, &(struct qd_download_args){.src = QD_REF(k->in, 0), .dst = act, .n = n}));
    qd_phase_set(k->be, prev);
    return QD_OK;
}

static qd_status w_forward_fp(void *user, int b, float *act, size_t nseq) {
    qd_run *k = user;
    double t0 = qd_clock_s();
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
    k->t.fp_s += qd_clock_s() - t0;
    return st;
}

/* The tensors of a block other than quantized Linear weights, as they are on the device after
 * quantization (AWQ rescales norms and biases): staged so the export writes what the codes assume. */
static qd_status stage_tensor(qd_run *k, qd_staged_block *sb, int b, const char *module, qd_buf_t buf) {
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

/* the report's record of a module this rank quantized (qd_run.recs) */
static qd_status keep_record(qd_run *k, qd_qrecord rec) {
    if (k->nrecs == k->caprecs) {
        size_t nc = k->caprecs ? 2 * k->caprecs : 64;
        qd_qrecord *t = realloc(k->recs, nc * sizeof *t);
        if (!t) return qd_fail(QD_ERR_NOMEM, "block %d: out of memory for the report", rec.block);
        k->recs = t, k->caprecs = nc;
    }
    k->recs[k->nrecs++] = rec;
    return QD_OK;
}

/* A staged block read by the staging writer and, on rank 0, by the streamed export: each calls
 * release_staged once, the last one frees it. */
typedef struct shared_block {
    qd_staged_block b; /* first: a qd_staged_block * of it is a shared_block * */
    atomic_int extra;  /* holders besides the staging writer */
} shared_block;

/* everything a staged block owns: the arrays taken from the results, the tensors, the block itself */
static void release_staged(qd_staged_block *sb) {
    if (!sb) return;
    if (atomic_fetch_sub(&((shared_block *)sb)->extra, 1) > 0) return; /* another holder still reads it */
    for (size_t i = 0; sb->modules && i < sb->nmodules; i++) qd_qlinear_free(&sb->modules[i].q);
    for (size_t i = 0; sb->tensors && i < sb->ntensors; i++) free(sb->tensors[i].data);
    free(sb->tensors);
    free(sb->modules);
    free(sb->sources);
    free(sb);
}

/* The run's last block on rank 0, when the streamed export holds it and the staging is removed once
 * the export commits (no --keep-staging): its staging write (seconds for a large MoE block, after
 * which nothing else computes) would only guard the export tail, so it is held back. A kill in the
 * tail makes --resume quantize that one block again, with the same result; an export that fails
 * stages it before the run ends (qd_run_stage_tail). QD_INJECT_KILL keeps its "after staging". */
static int hold_back(const qd_run *k, int b) {
    return k->xs && !k->o->keep_staging && b == k->cfg->nlayers - 1 && !qd_param_str(QD_PARAM_INJECT_KILL);
}

qd_status qd_run_stage_tail(qd_run *k, int write) {
    qd_staged_block *sb = k->tail;
    k->tail = NULL;
    if (!sb) return QD_OK;
    if (!write) {
        release_staged(sb);
        return QD_OK;
    }
    qd_phase prev = qd_phase_set(k->be, QD_PH_STAGING);
    qd_status st = qd_stage_writer_submit(k->writer, sb, release_staged);
    if (st == QD_OK) st = qd_stage_writer_flush(k->writer);
    qd_phase_set(k->be, prev);
    return st;
}

/* Hands block b to the staging writer (qd-stage-writer.h), taking the arrays of res (left NULL) and
 * the text of its source hashes (*sources, left NULL). */
static qd_status stage_block(qd_run *k, int b, const qd_block_w *w, qd_qresult *res, char **sources, double seconds) {
    qd_phase prev = qd_phase_set(k->be, QD_PH_STAGING);
    shared_block *shb = calloc(1, sizeof *shb);
    qd_staged_block *sb = shb ? &shb->b : NULL;
    qd_status st = QD_OK;
    if (!sb) {
        st = qd_fail(QD_ERR_NOMEM, "block %d: out of memory staging", b);
        goto out;
    }
    *sb = (qd_staged_block){.block = b, .rank = qd_mpi_rank(), .time_s = seconds, .sources = *sources};
    *sources = NULL;
    sb->modules = calloc((size_t)w->nlin, sizeof *sb->modules);
    sb->tensors = calloc(6 + 2 * (size_t)w->nlin, sizeof *sb->tensors); /* + k/v scales */
    if (!sb->modules || !sb->tensors) {
        st = qd_fail(QD_ERR_NOMEM, "block %d: out of memory staging", b);
        goto out;
    }
    char name[256];
    for (int l = 0; l < w->nlin; l++) {
        qd_qlinear *q = &res[l].q;
        if (!q->codes) {
            /* left unquantized (recipe skip, a router): its weight as the run leaves it */
            snprintf(name, sizeof name, "%s.weight", w->lin[l].module);
            QD_CHECK_GOTO(stage_tensor(k, sb, b, name, w->w[l]), st, out);
            sb->tensors[sb->ntensors - 1].ndim = 2;
            sb->tensors[sb->ntensors - 1].shape[0] = (int64_t)w->n_out[l];
            sb->tensors[sb->ntensors - 1].shape[1] = (int64_t)w->n_in[l];
        } else {
            qd_staged_module *m = &sb->modules[sb->nmodules++];
            *m = (qd_staged_module){.q = *q, .s = res[l].s}; /* the arrays are now the block's */
            *q = qd_qlinear_header(q);
            snprintf(m->q.name, sizeof m->q.name, "%s", w->lin[l].module); /* staged names are block-relative */
            QD_CHECK_GOTO(keep_record(k, qd_qrecord_of(b, qd_mpi_rank(), &m->q, &m->s)), st, out);
        }
        snprintf(name, sizeof name, "%s.bias", w->lin[l].module);
        QD_CHECK_GOTO(stage_tensor(k, sb, b, name, w->b[l]), st, out);
    }
    QD_CHECK_GOTO(stage_tensor(k, sb, b, "input_layernorm.weight", w->ln_in), st, out);
    QD_CHECK_GOTO(stage_tensor(k, sb, b, "post_attention_layernorm.weight", w->ln_post), st, out);
    QD_CHECK_GOTO(stage_tensor(k, sb, b, "self_attn.q_norm.weight", w->q_norm), st, out);
    QD_CHECK_GOTO(stage_tensor(k, sb, b, "self_attn.k_norm.weight", w->k_norm), st, out);
    QD_CHECK_GOTO(stage_tensor(k, sb, b, "self_attn.q_a_layernorm.weight", w->q_a_norm), st, out);
    QD_CHECK_GOTO(stage_tensor(k, sb, b, "self_attn.kv_a_layernorm.weight", w->kv_a_norm), st, out);
    QD_CHECK_GOTO(qd_run_kv_stage(k, sb, b), st, out);
    double t0 = qd_clock_s();
    if (k->xs) { /* rank 0's streamed export packs it into its shards beside the staging write */
        atomic_fetch_add(&shb->extra, 1);
        qd_run_stream_block(k, sb, release_staged);
    }
    if (hold_back(k, b)) k->tail = sb; /* written only if the export does not commit (qd_run_stage_tail) */
    else st = qd_stage_writer_submit(k->writer, sb, release_staged); /* waits for the previous block's write */
    sb = NULL;
    k->t.stage_s += qd_clock_s() - t0;
out:
    release_staged(sb);
    qd_phase_set(k->be, prev);
    return st;
}

static qd_status w_quantize(void *user, int b) {
    qd_run *k = user;
    double t0 = qd_clock_s();
    qd_block_w w = {0};
    qd_qresult *res = NULL;
    char *sources = NULL;
    qd_block_sources_job *hashing = NULL;
    qd_status st = QD_OK;
    int stager = qd_run_dp_stager(k, b); /* data-parallel: every rank holds the results, one stages them */
    if (!stager && no_calib(k)) goto out;
    QD_CHECK_GOTO(load_block(k, b, &w), st, out);
    res = calloc((size_t)w.nlin, sizeof *res);
    if (!res) {
        st = qd_fail(QD_ERR_NOMEM, "block %d: out of memory for its results", b);
        goto out;
    }
    /* the bytes the load just read, hashed while their pages are hot, beside the compute (qd-block-sources.h) */
    if (stager) QD_CHECK_GOTO(qd_block_sources_start(k->cfg, qd_model_ckpt(k->model), b, &hashing), st, out);
    QD_CHECK_GOTO(qd_quantize_block(k->ctx, &w, k->in, k->out, res), st, out);
    st = qd_block_sources_join(hashing, &sources);
    hashing = NULL;
    if (st != QD_OK) goto out;
    /* a scale the checkpoint cannot hold is refused now, not after the whole run at export */
    for (int l = 0; stager && l < w.nlin; l++) {
        if (!res[l].q.codes) continue;
        QD_CHECK_GOTO(qd_qlinear_check_scales(&res[l].q, k->store_dt, k->o->format), st, out);
        QD_CHECK_GOTO(qd_qlinear_check_scales(&res[l].q, k->o->q.scale_dtype, "--scale-dtype"), st, out);
    }
    if (stager) QD_CHECK_GOTO(stage_block(k, b, &w, res, &sources, qd_clock_s() - t0), st, out);
    if (no_calib(k)) goto out;
    /* k->out already holds what a resumed run's replay computes (qd-replay.h): the same forward ops
     * on the same chunks with the same installed weights (GPTQ/RTN), or the unmodified block's
     * forward (AWQ's full-precision chain). Recomputing it would cost one more forward per block. */
    qd_buf_t t = k->in;
    k->in = k->out, k->out = t;
out:
    if (hashing) (void)qd_block_sources_join(hashing, &sources); /* failed before the join: wait for the thread */
    free(sources);
    for (int l = 0; res && l < w.nlin; l++) qd_qresult_free(&res[l]);
    free(res);
    qd_block_w_free(&w);
    qd_run_sample_mem(k);
    k->t.quant_s += qd_clock_s() - t0;
    return st;
}

/* A staged block's source tensors as they are now against the hashes staged with it: a --resume
 * never mixes blocks quantized from weights that were since changed in place with new ones. */
static qd_status check_sources(qd_run *k, int b, const qd_staged_block *sb) {
    char *now = NULL;
    QD_CHECK(qd_block_sources(k->cfg, qd_model_ckpt(k->model), b, &now));
    qd_status st = qd_block_sources_check(qd_model_ckpt(k->model), b, sb->sources, now, qd_stage_dir(k->stage));
    free(now);
    return st;
}

/* RTN without calibration hands nothing on, so the block is not replayed; its sources are checked */
static qd_status check_staged_only(qd_run *k, int b) {
    qd_staged_block *sb = NULL;
    qd_status st = qd_stage_writer_flush(k->writer);
    if (st == QD_OK) st = qd_stage_read_block(k->stage, b, &sb);
    if (st == QD_OK) st = check_sources(k, b, sb);
    qd_staged_block_free(sb);
    return st;
}

/* SmoothQuant changed the block's norms and its full-precision Linears (routers): the replay computes
 * with the staged ones, as the quantized Linears' codes assume */
static qd_status install_staged_plain(qd_run *k, qd_block_w *w, const qd_staged_block *sb, const qd_qresult *res) {
    char name[256];
    for (size_t i = 0; i < sb->ntensors; i++) {
        const qd_staged_tensor *t = &sb->tensors[i];
        qd_buf_t dst = NULL;
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", w->index);
        if (strcmp(t->name, name) == 0) dst = w->ln_in;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", w->index);
        if (strcmp(t->name, name) == 0) dst = w->ln_post;
        for (int l = 0; !dst && l < w->nlin; l++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", w->index, w->lin[l].module);
            if (!res[l].q.codes && strcmp(t->name, name) == 0) dst = w->w[l];
        }
        if (!dst) continue;
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
        if (n != qd_buf_len(dst))
            return qd_fail(QD_ERR_FORMAT, "%s/block-%05d.h5: staged %s has %zu elements, the block %zu",
                           qd_stage_dir(k->stage), w->index, t->name, n, qd_buf_len(dst));
        QD_CHECK(qd_be_upload(k->be, &(struct qd_upload_args){.dst = QD_REF(dst, 0), .src = t->data,
                                                              .src_dtype = QD_DT_F32, .n = n}));
    }
    return QD_OK;
}

static qd_status w_replay(void *user, int b) {
    qd_run *k = user;
    if (no_calib(k)) return qd_run_dp_stager(k, b) ? check_staged_only(k, b) : QD_OK;
    double t0 = qd_clock_s();
    qd_block_w w = {0};
    qd_staged_block *sb = NULL;
    qd_qresult *res = NULL;
    qd_status st;
    QD_CHECK_GOTO(load_block(k, b, &w), st, out);
    res = calloc((size_t)w.nlin, sizeof *res);
    if (!res) {
        st = qd_fail(QD_ERR_NOMEM, "block %d: out of memory for its results", b);
        goto out;
    }
    qd_phase prev = qd_phase_set(k->be, QD_PH_STAGING);
    st = qd_stage_writer_flush(k->writer); /* HDF5 is single-threaded: no read while a write is in flight */
    if (st == QD_OK) st = qd_stage_read_block(k->stage, b, &sb);
    qd_phase_set(k->be, prev);
    if (st != QD_OK) goto out;
    QD_CHECK_GOTO(check_sources(k, b, sb), st, out);
    for (size_t i = 0; i < sb->nmodules; i++) {
        qd_staged_module *m = &sb->modules[i];
        int l = -1;
        for (int j = 0; j < w.nlin; j++)
            if (strcmp(m->q.name, w.lin[j].module) == 0) l = j;
        if (l < 0) {
            st = qd_fail(QD_ERR_FORMAT, "%s/block-%05d.h5: unknown module '%s'", qd_stage_dir(k->stage), b, m->q.name);
            goto out;
        }
        qd_qlinear *q = &res[l].q;
        *q = m->q; /* borrows the staged arrays; sb owns them */
        snprintf(q->name, sizeof q->name, "model.layers.%d.%.200s", b, m->q.name);
    }
    if (k->o->q.smooth) QD_CHECK_GOTO(install_staged_plain(k, &w, sb, res), st, out);
    st = qd_block_replay(k->ctx, &w, res, k->in, k->out);
    if (st == QD_OK) {
        qd_buf_t t = k->in;
        k->in = k->out, k->out = t;
    }
out:
    free(res); /* its arrays are sb's */
    qd_staged_block_free(sb);
    qd_block_w_free(&w);
    k->t.replay_s += qd_clock_s() - t0;
    return st;
}

static int w_is_staged(void *user, int b) { return qd_stage_has_block(((qd_run *)user)->stage, b); }

qd_status qd_run_flush(qd_run *k) {
    qd_phase prev = qd_phase_set(k->be, QD_PH_STAGING);
    qd_status st = qd_stage_writer_flush(k->writer);
    qd_phase_set(k->be, prev);
    return st;
}

static qd_status w_flush(void *user) { return qd_run_flush(user); }

void qd_run_worker(qd_run *k, size_t micro_batch, struct qd_block_worker *out) {
    *out = (struct qd_block_worker){.user = k, .nseq = k->nseq_local, .seq_elems = k->o->q.seq_len * (size_t)k->cfg->hidden,
                                    .micro_batch = micro_batch, .embed = w_embed, .embed_device = w_embed_device,
                                    .forward_fp = w_forward_fp, .load = w_load, .store = w_store,
                                    .quantize = w_quantize, .replay = w_replay, .is_staged = w_is_staged,
                                    .flush = w_flush};
}
