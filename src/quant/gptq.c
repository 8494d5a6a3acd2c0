/* SPDX-License-Identifier: MIT
 * gptq.c - GPTQ for one Linear (docs/reference/algorithms.md section 1), orchestrated on the host over the backend:
 * dead columns, act-order, static groups, damping with retries, the column sweep, un-permutation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-phase.h"
#include "qd-quant.h"

#define QD_GPTQ_BLOCK 128

/* The damping schedule: d, then d + 0.0015 i for i = 1..10 (GPTQModel's step), then doubling while
 * below 1 - at most 17 factorizations for d in [0, 1). Returns 0 when exhausted. A d outside [0, 1)
 * (callers refuse it; see qd-qbounds.h) gets one attempt, never an endless doubling of a negative. */
static int next_damp(double first, int attempt, double *damp) {
    if (attempt > 0 && !(first >= 0 && first < 1)) return 0;
    if (attempt == 0) {
        *damp = first;
        return 1;
    }
    if (attempt <= 10) {
        *damp = first + 0.0015 * attempt;
        return 1;
    }
    double d = (first + 0.015) * pow(2.0, attempt - 10);
    if (d >= 1.0) return 0;
    *damp = d;
    return 1;
}

/* stable argsort, descending (ties keep index order): bottom-up merge sort over indices */
static void argsort_desc(const float *key, int32_t *idx, int32_t *tmp, size_t n) {
    for (size_t i = 0; i < n; i++) idx[i] = (int32_t)i;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi) tmp[o++] = key[idx[b]] > key[idx[a]] ? idx[b++] : idx[a++];
            while (a < mid) tmp[o++] = idx[a++];
            while (b < hi) tmp[o++] = idx[b++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

void qd_gptq_fac_free(qd_gptq_fac *f) {
    if (!f) return;
    qd_buf_free(f->keep), qd_buf_free(f->perm), qd_buf_free(f->invperm);
    if (f->own_U) qd_buf_free(f->U);
    free(f->hinvperm);
    memset(f, 0, sizeof *f);
}

int qd_gptq_fac_fits(const qd_gptq_fac *f, const qd_qspec *s) {
    return f && f->U && f->damp_first == s->damp && f->act_order == !!s->act_order;
}

qd_status qd_gptq_factor(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t H, size_t K, qd_gptq_fac *f) {
    if (!(s->damp >= 0 && s->damp < 1))
        return qd_fail(QD_ERR_USAGE, "%s: GPTQ damp %g is outside [0, 1)", name, s->damp);
    qd_phase prev = qd_phase_set(be, QD_PH_CHOLESKY);
    memset(f, 0, sizeof *f);
    f->K = K;
    f->act_order = !!s->act_order;
    f->damp_first = s->damp;
    float *diag = NULL, *mask = NULL;
    int32_t *perm = NULL;
    qd_buf_t bdiag = NULL, bmask = NULL, Hp = NULL, bsave = NULL;
    /* H may hold only its upper triangle (qd_hessian_args.upper_only): complete it once, here */
    qd_status st = qd_be_symmetrize(be, &(struct qd_symmetrize_args){.A = QD_REF(H, 0), .n = K});
    if (st == QD_OK) st = qd_check_finite(be, H, 0, K * K, "the Hessian (layer inputs)", name);
    if (st != QD_OK) goto done;
    diag = malloc(K * sizeof *diag), mask = malloc(K * sizeof *mask), perm = malloc(K * sizeof *perm);
    f->hinvperm = malloc(K * sizeof *f->hinvperm);
    if (!diag || !mask || !perm || !f->hinvperm) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory (K = %zu)", name, K);
        goto done;
    }
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &bdiag), st, done);
    /* the diagonal: a strided copy (stride K + 1) */
    QD_CHECK_GOTO(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(bdiag, 0), .src = QD_REF(H, 0), .rows = K,
                                                        .cols = 1, .ldd = 1, .lds = K + 1}), st, done);
    QD_CHECK_GOTO(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(bdiag, 0), .dst = diag, .n = K}), st, done);
    qd_buf_free(bdiag), bdiag = NULL;
    /* dead columns: H_ii = 1 here; the modules zero W[:, i] with the keep-mask (qd_gptq_apply) */
    for (size_t k = 0; k < K; k++) {
        int dead = diag[k] == 0.0f;
        f->ndead += (size_t)dead;
        mask[k] = dead ? 1.0f : 0.0f; /* diag increment */
        if (dead) diag[k] = 1.0f;
    }
    if (f->ndead) {
        QD_CHECK_GOTO(qd_buf_alloc(be, K, &bmask), st, done);
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bmask, 0), .src = mask,
                                                                .src_dtype = QD_DT_F32, .n = K}), st, done);
        QD_CHECK_GOTO(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(H, 0), .n = K, .v = bmask}), st, done);
        for (size_t k = 0; k < K; k++) mask[k] = mask[k] != 0.0f ? 0.0f : 1.0f; /* column keep-mask */
        QD_CHECK_GOTO(qd_buf_alloc(be, K, &f->keep), st, done);
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(f->keep, 0), .src = mask,
                                                                .src_dtype = QD_DT_F32, .n = K}), st, done);
        qd_debug("%s: %zu dead input columns", name, f->ndead);
    }
    /* act-order: H rows/columns in descending diag order (the modules permute W's columns alike) */
    qd_buf_t Hq = H;
    if (f->act_order) {
        argsort_desc(diag, perm, f->hinvperm, K);
        for (size_t k = 0; k < K; k++) f->hinvperm[perm[k]] = (int32_t)k;
        QD_CHECK_GOTO(qd_buf_alloc(be, K, &f->perm), st, done);
        QD_CHECK_GOTO(qd_buf_alloc(be, K, &f->invperm), st, done);
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(f->perm, 0), .src = perm,
                                                                .src_dtype = QD_DT_I32, .n = K}), st, done);
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(f->invperm, 0), .src = f->hinvperm,
                                                                .src_dtype = QD_DT_I32, .n = K}), st, done);
        QD_CHECK_GOTO(qd_buf_alloc(be, K * K, &Hp), st, done);
        QD_CHECK_GOTO(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_SYM, .dst = QD_REF(Hp, 0),
                                                                  .src = QD_REF(H, 0), .perm = QD_REF(f->perm, 0),
                                                                  .rows = K, .cols = K}), st, done);
        Hq = Hp;
    }
    /* damping with retries, in place: U is made in Hq's own memory (no K x K copy: for K = 28672 that is
     * 3.3 GB). chol_inv leaves its input unchanged when it fails (qd-backend.h), so restoring the
     * saved diagonal gives every attempt the same Hq + damp * mean as a fresh copy would. */
    double mean = 0;
    for (size_t k = 0; k < K; k++) mean += diag[k];
    mean /= (double)K;
    f->U = Hq;
    f->own_U = Hq == Hp;
    Hp = NULL; /* owned by f now */
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &bsave), st, done);
    QD_CHECK_GOTO(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(bsave, 0), .src = QD_REF(f->U, 0), .rows = K,
                                                        .cols = 1, .ldd = 1, .lds = K + 1}), st, done);
    double damp = s->damp;
    int ok = 0, attempt = 0;
    for (; next_damp(s->damp, attempt, &damp); attempt++) {
        if (attempt > 0) /* the undamped diagonal back */
            QD_CHECK_GOTO(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(f->U, 0), .src = QD_REF(bsave, 0),
                                                                .rows = K, .cols = 1, .ldd = K + 1, .lds = 1}), st, done);
        QD_CHECK_GOTO(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(f->U, 0), .n = K,
                                                                    .scalar = (float)(damp * mean)}), st, done);
        st = qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = QD_REF(f->U, 0), .n = K});
        if (st == QD_OK) {
            ok = 1;
            break;
        }
        if (st != QD_ERR_NUMERIC) goto done;
    }
    st = QD_OK;
    f->fallback[0] = 0;
    if (!ok) {
        snprintf(f->fallback, sizeof f->fallback,
                 "Cholesky failed for damp %.4g..%.4g (%d attempts): RTN (Hinv = I)", s->damp, damp, attempt);
        qd_warn("%s: %s", name, f->fallback);
        damp = -1;
        QD_CHECK_GOTO(qd_be_fill(be, &(struct qd_fill_args){.dst = QD_REF(f->U, 0), .n = K * K}), st, done);
        QD_CHECK_GOTO(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(f->U, 0), .n = K, .scalar = 1}), st, done);
    } else if (attempt > 0) {
        snprintf(f->fallback, sizeof f->fallback, "damp raised from %.4g to %.4g after %d Cholesky failures",
                 s->damp, damp, attempt);
        qd_warn("%s: %s", name, f->fallback);
    }
    f->damp = damp;
done:
    qd_buf_free(bdiag), qd_buf_free(bmask), qd_buf_free(Hp), qd_buf_free(bsave);
    free(diag), free(mask), free(perm);
    if (st != QD_OK) qd_gptq_fac_free(f);
    qd_phase_set(be, prev);
    return st;
}

/* float targets: the scales [G][N] of the prepared W as round-to-nearest makes them (qd_float_scales),
 * zeros 0; nvfp4's global scale into *global */
static qd_status float_params(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                              size_t G, qd_buf_t scales, qd_buf_t zeros, float *global) {
    float *w = malloc(N * K * sizeof *w), *sc = malloc(G * N * sizeof *sc);
    int32_t *z = calloc(G * N, sizeof *z);
    qd_status st = w && sc && z ? QD_OK : qd_fail(QD_ERR_NOMEM, "%s: out of memory for the %s scales", name,
                                                  qd_scheme_name(s->scheme));
    if (st == QD_OK) st = qd_be_download(be, &(struct qd_download_args){.src = QD_REF(W, 0), .dst = w, .n = N * K});
    if (st == QD_OK) {
        *global = qd_float_scales(w, N, K, s, sc);
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(scales, 0), .src = sc, .src_dtype = QD_DT_F32,
                                                        .n = G * N});
    }
    if (st == QD_OK)
        st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(zeros, 0), .src = z, .src_dtype = QD_DT_I32,
                                                        .n = G * N});
    free(w), free(sc), free(z);
    return st;
}

qd_status qd_gptq_apply(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                        const qd_gptq_fac *f, qd_qresult *out) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (f->K != K || !qd_gptq_fac_fits(f, s))
        return qd_fail(QD_ERR_INTERNAL, "%s: GPTQ factorization made for other settings (K %zu vs %zu)", name, f->K, K);
    qd_phase prev = qd_phase_set(be, QD_PH_CHOLESKY); /* W's preparation, as before the factor was shared */
    size_t G;
    QD_CHECK(qd_qspec_groups(s, name, K, &G));
    QD_CHECK(qd_check_finite(be, W, 0, N * K, "the weight", name));
    size_t gs = G == 1 ? K : qd_scheme_is_float(s->scheme) ? qd_float_group(s, K) : (size_t)s->group_size;
    int grouped = G > 1, act = f->act_order, stat = s->static_groups && grouped;
    float global = 0;
    qd_qcfg cfg = qd_qspec_qcfg(s);
    qd_buf_t scales = NULL, zeros = NULL, Wp = NULL, codes_p = NULL, codes_o = NULL;
    int32_t *g_idx = malloc(K * sizeof *g_idx);
    qd_status st;
    if (!g_idx) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory (K = %zu)", name, K);
        goto done;
    }
    QD_CHECK_GOTO(qd_buf_alloc(be, G * N, &scales), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, G * N, &zeros), st, done);
    if (f->ndead) /* dead columns: W[:, i] = 0 */
        QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_MUL_COLV, .out = QD_REF(W, 0),
                                                              .x = QD_REF(W, 0), .v = QD_REF(f->keep, 0), .rows = N,
                                                              .cols = K, .ld = K}), st, done);
    if (qd_scheme_is_float(s->scheme)) { /* the scales RTN would use, fixed first: the sweep only picks codes */
        cfg.kind = qd_scheme_is_fp8(s->scheme) ? QD_QZ_FP8 : QD_QZ_FP4;
        stat = grouped;
        QD_CHECK_GOTO(float_params(be, name, s, W, N, K, G, scales, zeros, &global), st, done);
    } else if (!grouped) /* one group: parameters from W after dead-column zeroing (docs/numerics.md) */
        QD_CHECK_GOTO(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = cfg, .W = QD_REF(W, 0),
                                                                    .scales = QD_REF(scales, 0),
                                                                    .zeros = QD_REF(zeros, 0), .N = N, .K = K,
                                                                    .ldw = K, .group_size = K}), st, done);
    if (stat && !qd_scheme_is_float(s->scheme)) /* parameters from the un-permuted W, original group order */
        QD_CHECK_GOTO(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = cfg, .W = QD_REF(W, 0),
                                                                    .scales = QD_REF(scales, 0),
                                                                    .zeros = QD_REF(zeros, 0), .N = N, .K = K,
                                                                    .ldw = K, .group_size = gs}), st, done);
    qd_buf_t Wq = W;
    if (act) { /* W columns in the factor's order */
        QD_CHECK_GOTO(qd_buf_alloc(be, N * K, &Wp), st, done);
        QD_CHECK_GOTO(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_COLS, .dst = QD_REF(Wp, 0),
                                                                  .src = QD_REF(W, 0), .perm = QD_REF(f->perm, 0),
                                                                  .rows = N, .cols = K}), st, done);
        Wq = Wp;
    }
    qd_phase_set(be, QD_PH_SWEEP);
    QD_CHECK_GOTO(qd_buf_alloc(be, N * K, &codes_p), st, done);
    double loss;
    QD_CHECK_GOTO(qd_be_gptq_sweep(be, &(struct qd_gptq_sweep_args){.cfg = cfg, .W = QD_REF(Wq, 0), .U = QD_REF(f->U, 0),
                                                                     .codes = QD_REF(codes_p, 0),
                                                                     .scales = QD_REF(scales, 0),
                                                                     .zeros = QD_REF(zeros, 0),
                                                                     .perm = act ? QD_REF(f->perm, 0) : QD_REF(NULL, 0),
                                                                     .N = N, .K = K, .group_size = grouped ? gs : 0,
                                                                     .block_size = QD_GPTQ_BLOCK,
                                                                     .static_groups = stat || !grouped, .loss_out = &loss}),
                  st, done);
    qd_buf_t codes = codes_p;
    if (act) { /* back to the original column order */
        QD_CHECK_GOTO(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_COLS, .dst = QD_REF(W, 0),
                                                                  .src = QD_REF(Wp, 0), .perm = QD_REF(f->invperm, 0),
                                                                  .rows = N, .cols = K}), st, done);
        qd_buf_free(Wp), Wp = NULL; /* before the second N x K buffer: the peak stays at W + 2 N K */
        QD_CHECK_GOTO(qd_buf_alloc(be, N * K, &codes_o), st, done);
        QD_CHECK_GOTO(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_COLS, .dst = QD_REF(codes_o, 0),
                                                                  .src = QD_REF(codes_p, 0),
                                                                  .perm = QD_REF(f->invperm, 0), .rows = N, .cols = K}),
                      st, done);
        codes = codes_o;
    }
    for (size_t k = 0; k < K; k++)
        g_idx[k] = !grouped ? 0 : (act && !stat ? f->hinvperm[k] / (int32_t)gs : (int32_t)(k / gs));
    qd_phase_set(be, QD_PH_INSTALL);
    QD_CHECK_GOTO(qd_qresult_fetch(be, s, name, codes, scales, zeros, g_idx, N, K, G, out), st, done);
    out->q.global_scale = global;
    out->s.loss = loss;
    out->s.damp = f->damp;
    snprintf(out->s.fallback, sizeof out->s.fallback, "%s", f->fallback);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->s.seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
done:
    qd_buf_free(scales), qd_buf_free(zeros), qd_buf_free(Wp), qd_buf_free(codes_p), qd_buf_free(codes_o);
    free(g_idx);
    qd_phase_set(be, prev);
    return st;
}

qd_status qd_gptq_layer(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                        qd_buf_t H, qd_qresult *out) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t G;
    QD_CHECK(qd_qspec_groups(s, name, K, &G));
    QD_CHECK(qd_check_finite(be, W, 0, N * K, "the weight", name));
    qd_gptq_fac f;
    QD_CHECK(qd_gptq_factor(be, name, s, H, K, &f));
    qd_status st = qd_gptq_apply(be, name, s, W, N, K, &f, out);
    qd_gptq_fac_free(&f);
    if (st == QD_OK) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        out->s.seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    }
    return st;
}
