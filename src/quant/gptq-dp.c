/* SPDX-License-Identifier: MIT
 * gptq-dp.c - GPTQ over data-parallel ranks (quantize-internal.h): each rank holds a share of the
 * calibration sequences, so a Linear group's Hessian is a sum of the ranks' partials; the solve is
 * split by output rows, which the column sweep treats independently once the factorization is known.
 * Every rank factorizes the same reduced Hessian (the same bits: same ops on the same input), sweeps its
 * rows, and the rows are gathered so that every rank installs the whole quantized Linear.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-phase.h"
#include "quantize-internal.h"

qd_status qd__dp_hess_slab(qd_qctx *c, int g, qd_ref x, size_t rows, float alpha) {
    size_t K = c->gK[g], KK = K * K;
    if (!c->Hs || qd_buf_len(c->Hs) < KK) {
        qd_buf_free(c->Hs);
        c->Hs = NULL;
        QD_CHECK(qd_buf_alloc(c->be, KK, &c->Hs));
    }
    QD_CHECK(qd_be_hessian(c->be, &(struct qd_hessian_args){.H = QD_REF(c->Hs, 0), .X = x, .T = rows, .K = K,
                                                            .ldx = K, .alpha = alpha, .beta = 0,
                                                            .upper_only = 1})); /* as hess_cb: the factor completes it */
    float *t = realloc(c->slabs[g], (c->nslabs[g] + 1) * KK * sizeof *t);
    if (!t) return qd_fail(QD_ERR_NOMEM, "hessian: out of memory keeping %zu slab Hessians of %zu x %zu", c->nslabs[g] + 1, K, K);
    c->slabs[g] = t;
    QD_CHECK(qd_be_download(c->be, &(struct qd_download_args){.src = QD_REF(c->Hs, 0), .dst = t + c->nslabs[g] * KK,
                                                              .n = KK}));
    c->nslabs[g]++;
    return QD_OK;
}

/* Exact numerics: H = (((0 + s_0) + s_1) + ...) over the slabs in slab order, in fp32 on the host (so
 * the CPU and CUDA backends add alike). Rank r adds its slabs to what ranks < r made and hands the sum
 * on: ranks own contiguous slabs in rank order, so the fold is the same for every rank count. */
static qd_status fold_exact(qd_qctx *c, int g) {
    const qd_collective *cl = c->coll;
    size_t K = c->gK[g], KK = K * K, chunk = c->chunk_seqs;
    float *H = calloc(KK, sizeof *H);
    if (!H) return qd_fail(QD_ERR_NOMEM, "hessian: out of memory for %zu x %zu", K, K);
    qd_status st = QD_OK;
    for (int r = 0; r < cl->size && st == QD_OK; r++) {
        size_t first, count;
        qd_collective_share(c->nseq_total, chunk, r, cl->size, &first, &count);
        if (!count) continue; /* every rank knows the shares: a rank with no sequences adds nothing */
        if (r == cl->rank)
            for (size_t s = 0; s < c->nslabs[g]; s++) {
                const float *p = c->slabs[g] + s * KK;
                for (size_t i = 0; i < KK; i++) H[i] = H[i] + p[i];
            }
        if (cl->size > 1) st = cl->bcast(cl, H, KK * sizeof *H, r);
    }
    if (st == QD_OK)
        st = qd_be_upload(c->be, &(struct qd_upload_args){.dst = QD_REF(c->H[g], 0), .src = H, .src_dtype = QD_DT_F32,
                                                          .n = KK});
    free(H);
    return st;
}

/* expert parallel (moe-ep.c): the owner holds every chunk's slab in chunk order, the same fold */
static qd_status fold_local(qd_qctx *c, int g) {
    size_t KK = c->gK[g] * c->gK[g];
    float *H = calloc(KK, sizeof *H);
    if (!H) return qd_fail(QD_ERR_NOMEM, "hessian: out of memory for %zu x %zu", c->gK[g], c->gK[g]);
    for (size_t s = 0; s < c->nslabs[g]; s++) {
        const float *p = c->slabs[g] + s * KK;
        for (size_t i = 0; i < KK; i++) H[i] = H[i] + p[i];
    }
    qd_status st = qd_be_upload(c->be, &(struct qd_upload_args){.dst = QD_REF(c->H[g], 0), .src = H,
                                                                .src_dtype = QD_DT_F32, .n = KK});
    free(H);
    return st;
}

qd_status qd__hess_total(qd_qctx *c, int g) {
    size_t K = c->gK[g];
    qd_status st = QD_OK;
    int local = c->key_local && c->key_local[g] == 1; /* an expert this rank owns: every term is here */
    qd_phase prev = qd_phase_set(c->be, QD_PH_REDUCE);
    if (qd_be_numerics(c->be) == QD_NUMERICS_EXACT) {
        if (c->coll) st = local ? fold_local(c, g) : fold_exact(c, g);
        free(c->slabs[g]);
        c->slabs[g] = NULL, c->nslabs[g] = 0;
    } else {
        qd_ref acc = QD_REF(c->Hacc[g], 0);
        if (c->coll && c->coll->size > 1 && !local) st = c->coll->allreduce_acc64(c->coll, c->be, acc, K * K);
        if (st == QD_OK)
            st = qd_be_acc64(c->be, &(struct qd_acc64_args){.kind = QD_ACC64_ROUND, .acc = acc,
                                                            .x = QD_REF(c->H[g], 0), .n = K * K, .upper_k = K});
        qd_buf_free(c->Hacc[g]); /* 2 K^2 elements: given back until the group's next Hessian */
        c->Hacc[g] = NULL;
    }
    qd_phase_set(c->be, prev);
    return st;
}

/* one rank's rows of a Linear as bytes: codes [n][K], scales [G][n], zeros [G][n], then the loss */
static size_t part_bytes(size_t n, size_t K, size_t G) { return n * K + G * n * (sizeof(float) + sizeof(int32_t)) + sizeof(double); }

static void pack(const qd_qresult *p, size_t n, size_t K, size_t G, char *dst) {
    if (n) {
        memcpy(dst, p->q.codes, n * K), dst += n * K;
        memcpy(dst, p->q.scales, G * n * sizeof(float)), dst += G * n * sizeof(float);
        memcpy(dst, p->q.zeros, G * n * sizeof(int32_t)), dst += G * n * sizeof(int32_t);
    }
    double loss = n ? p->s.loss : 0;
    memcpy(dst, &loss, sizeof loss);
}

/* rank r's rows [n0, n0 + n) into the whole Linear; the loss is summed in rank order */
static void unpack(const char *src, size_t n0, size_t n, size_t N, size_t K, size_t G, qd_qresult *out) {
    memcpy(out->q.codes + n0 * K, src, n * K), src += n * K;
    for (size_t g = 0; g < G; g++) memcpy(out->q.scales + g * N + n0, src + g * n * sizeof(float), n * sizeof(float));
    src += G * n * sizeof(float);
    for (size_t g = 0; g < G; g++) memcpy(out->q.zeros + g * N + n0, src + g * n * sizeof(int32_t), n * sizeof(int32_t));
    src += G * n * sizeof(int32_t);
    double loss;
    memcpy(&loss, src, sizeof loss);
    out->s.loss += loss;
}

/* fp8-static's tensor scale, found from the whole weight W [N][K] into spec, so that every rank's rows
 * use it (nvfp4's global scale is set for every Linear before GPTQ: qd__fp4_fuse_globals) */
static qd_status whole_weight_scale(qd_backend_t be, const char *name, qd_buf_t W, size_t N, size_t K, qd_qspec *spec) {
    float *w = malloc(N * K * sizeof *w + 1), *sc = malloc(N * sizeof *sc + 1);
    qd_status st = w && sc ? QD_OK : qd_fail(QD_ERR_NOMEM, "%s: out of memory for the %s scale", name,
                                             qd_scheme_name(spec->scheme));
    if (st == QD_OK) st = qd_be_download(be, &(struct qd_download_args){.src = QD_REF(W, 0), .dst = w, .n = N * K});
    if (st == QD_OK && N) {
        qd_fp8_scales(w, N, K, spec, sc); /* one tile: every row holds the tensor's scale */
        spec->fp8_tensor_scale = sc[0];
    }
    free(w), free(sc);
    return st;
}

qd_status qd__dp_gptq_apply(qd_qctx *c, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                            const qd_gptq_fac *f, qd_qresult *out) {
    const qd_collective *cl = c->coll;
    qd_backend_t be = c->be;
    size_t G, n0, n;
    QD_CHECK(qd_qspec_groups(s, name, K, &G));
    /* fp8-block: whole 128-row blocks per rank, so that each block's scale is found from all its rows */
    size_t unit = s->scheme == QD_SCHEME_FP8_BLOCK ? QD_FP8_BLOCK_SIZE : 1;
    qd_collective_share(N, unit, cl->rank, cl->size, &n0, &n);
    qd_qresult part;
    memset(&part, 0, sizeof part);
    qd_buf_t Ws = NULL;
    size_t *counts = calloc((size_t)cl->size, sizeof *counts);
    char *mine = NULL, *all = NULL;
    qd_status st = QD_OK;
    if (!counts) return qd_fail(QD_ERR_NOMEM, "%s: out of memory", name);
    qd_qspec rows_spec = *s; /* every rank's rows share the whole weight's nvfp4 global or fp8-static scale */
    if (qd_scheme_is_nvfp4(s->scheme) && !(s->fp4_global > 0)) { /* only a non-finite weight leaves it unset */
        st = qd_check_finite(be, W, 0, N * K, "the weight", name);
        if (st == QD_OK) st = qd_fail(QD_ERR_INTERNAL, "%s: no nvfp4 global scale before the data-parallel GPTQ split", name);
    }
    if (st == QD_OK && s->scheme == QD_SCHEME_FP8_STATIC && !(s->fp8_tensor_scale > 0))
        st = whole_weight_scale(be, name, W, N, K, &rows_spec);
    if (st == QD_OK && n) { /* this rank's rows, swept alone */
        qd_phase prev = qd_phase_set(be, QD_PH_CHOLESKY);
        st = qd_buf_alloc(be, n * K, &Ws);
        if (st == QD_OK)
            st = qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(Ws, 0), .src = QD_REF(W, n0 * K), .rows = 1,
                                                       .cols = n * K, .ldd = n * K, .lds = n * K});
        qd_phase_set(be, prev);
        if (st == QD_OK) st = qd_gptq_apply(be, name, &rows_spec, Ws, n, K, f, &part);
    }
    if (st != QD_OK) goto done;
    size_t total = 0;
    for (int r = 0; r < cl->size; r++) {
        size_t a, m;
        qd_collective_share(N, unit, r, cl->size, &a, &m);
        counts[r] = part_bytes(m, K, G), total += counts[r];
    }
    mine = malloc(counts[cl->rank]), all = malloc(total);
    if (!mine || !all) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory gathering %zu bytes of results", name, total);
        goto done;
    }
    pack(&part, n, K, G, mine);
    qd_phase prev = qd_phase_set(be, QD_PH_REDUCE);
    st = cl->allgatherv(cl, mine, counts, all);
    qd_phase_set(be, prev);
    if (st != QD_OK) goto done;
    qd_qlinear *l = &out->q;
    QD_CHECK_GOTO(qd_qresult_alloc(s, name, N, K, G, out), st, done);
    out->s.loss = 0;
    const char *src = all;
    for (int r = 0; r < cl->size; r++) {
        size_t a, m;
        qd_collective_share(N, unit, r, cl->size, &a, &m);
        unpack(src, a, m, N, K, G, out);
        src += counts[r];
    }
    /* g_idx depends only on the factorization and the spec (as qd_gptq_apply makes it) */
    size_t gs = G == 1 ? K : (size_t)s->group_size;
    int stat = s->static_groups && G > 1;
    for (size_t k = 0; k < K; k++)
        l->g_idx[k] = G == 1 ? 0 : (f->act_order && !stat ? f->hinvperm[k] / (int32_t)gs : (int32_t)(k / gs));
    l->global_scale = qd_scheme_is_nvfp4(s->scheme) ? rows_spec.fp4_global : 0;
    out->s.damp = f->damp;
    snprintf(out->s.fallback, sizeof out->s.fallback, "%s", f->fallback);
    out->s.seconds = part.s.seconds;
done:
    qd_qresult_free(&part);
    qd_buf_free(Ws);
    free(counts), free(mine), free(all);
    return st;
}
