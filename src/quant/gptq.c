/* SPDX-License-Identifier: MIT
 * gptq.c - GPTQ for one Linear (algorithms.md section 1), orchestrated on the host over the backend:
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
 * below 1 - at most 17 factorizations. Returns 0 when exhausted. */
static int next_damp(double first, int attempt, double *damp) {
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

typedef struct {
    qd_buf_t diag, mask, perm, invperm, Wp, Hp, U, codes, codes_p, scales, zeros;
} gptq_bufs;

static void free_bufs(gptq_bufs *b) {
    qd_buf_t *all[] = {&b->diag, &b->mask, &b->perm, &b->invperm, &b->Wp, &b->Hp, &b->U, &b->codes, &b->codes_p,
                       &b->scales, &b->zeros};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) qd_buf_free(*all[i]);
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

qd_status qd_gptq_layer(qd_backend_t be, const char *name, const qd_qspec *s, qd_buf_t W, size_t N, size_t K,
                        qd_buf_t H, qd_qresult *out) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qd_phase prev = qd_phase_set(be, QD_PH_CHOLESKY); /* checks, dead columns, damping, chol_inv */
    size_t G;
    QD_CHECK(qd_qspec_groups(s, name, K, &G));
    QD_CHECK(qd_check_finite(be, W, 0, N * K, "the weight", name));
    QD_CHECK(qd_check_finite(be, H, 0, K * K, "the Hessian (layer inputs)", name));
    size_t gs = G == 1 ? K : (size_t)s->group_size;
    int grouped = G > 1, act = s->act_order, stat = s->static_groups && grouped;
    qd_qcfg cfg = qd_qspec_qcfg(s);
    gptq_bufs b = {0};
    float *diag = NULL, *mask = NULL;
    int32_t *perm = NULL, *invperm = NULL, *g_idx = NULL;
    qd_status st;
    diag = malloc(K * sizeof *diag), mask = malloc(K * sizeof *mask);
    perm = malloc(K * sizeof *perm), invperm = malloc(K * sizeof *invperm), g_idx = malloc(K * sizeof *g_idx);
    if (!diag || !mask || !perm || !invperm || !g_idx) {
        st = qd_fail(QD_ERR_NOMEM, "%s: out of memory (K = %zu)", name, K);
        goto done;
    }
    QD_CHECK_GOTO(qd_buf_alloc(be, G * N, &b.scales), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, G * N, &b.zeros), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &b.diag), st, done);
    QD_CHECK_GOTO(qd_buf_alloc(be, K, &b.mask), st, done);
    /* the diagonal: a strided copy (stride K + 1) */
    QD_CHECK_GOTO(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(b.diag, 0), .src = QD_REF(H, 0), .rows = K,
                                                        .cols = 1, .ldd = 1, .lds = K + 1}), st, done);
    QD_CHECK_GOTO(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(b.diag, 0), .dst = diag, .n = K}), st, done);
    /* dead columns: H_ii = 1, W[:, i] = 0 */
    size_t ndead = 0;
    for (size_t k = 0; k < K; k++) {
        int dead = diag[k] == 0.0f;
        ndead += (size_t)dead;
        mask[k] = dead ? 1.0f : 0.0f; /* diag increment */
        if (dead) diag[k] = 1.0f;
    }
    if (ndead) {
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b.mask, 0), .src = mask,
                                                                .src_dtype = QD_DT_F32, .n = K}), st, done);
        QD_CHECK_GOTO(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(H, 0), .n = K, .v = b.mask}), st, done);
        for (size_t k = 0; k < K; k++) mask[k] = mask[k] != 0.0f ? 0.0f : 1.0f; /* column keep-mask */
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b.mask, 0), .src = mask,
                                                                .src_dtype = QD_DT_F32, .n = K}), st, done);
        QD_CHECK_GOTO(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_MUL_COLV, .out = QD_REF(W, 0),
                                                              .x = QD_REF(W, 0), .v = QD_REF(b.mask, 0), .rows = N,
                                                              .cols = K, .ld = K}), st, done);
        qd_debug("%s: %zu dead input columns", name, ndead);
    }
    if (!grouped) /* one group: parameters from W after dead-column zeroing (docs/numerics.md) */
        QD_CHECK_GOTO(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = cfg, .W = QD_REF(W, 0),
                                                                    .scales = QD_REF(b.scales, 0),
                                                                    .zeros = QD_REF(b.zeros, 0), .N = N, .K = K,
                                                                    .ldw = K, .group_size = K}), st, done);
    if (stat) /* parameters from the un-permuted W, original group order */
        QD_CHECK_GOTO(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = cfg, .W = QD_REF(W, 0),
                                                                    .scales = QD_REF(b.scales, 0),
                                                                    .zeros = QD_REF(b.zeros, 0), .N = N, .K = K,
                                                                    .ldw = K, .group_size = gs}), st, done);
    /* act-order: W columns and H rows/columns in descending diag order */
    qd_buf_t Wq = W, Hq = H;
    if (act) {
        argsort_desc(diag, perm, invperm, K);
        for (size_t k = 0; k < K; k++) invperm[perm[k]] = (int32_t)k;
        QD_CHECK_GOTO(qd_buf_alloc(be, K, &b.perm), st, done);
        QD_CHECK_GOTO(qd_buf_alloc(be, K, &b.invperm), st, done);
        QD_CHECK_GOTO(qd_buf_alloc(be, N * K, &b.Wp), st, done);
        QD_CHECK_GOTO(qd_buf_alloc(be, K * K, &b.Hp), st, done);
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b.perm, 0), .src = perm,
                                                                .src_dtype = QD_DT_I32, .n = K}), st, done);
        QD_CHECK_GOTO(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b.invperm, 0), .src = invperm,
                                                                .src_dtype = QD_DT_I32, .n = K}), st, done);
        QD_CHECK_GOTO(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_COLS, .dst = QD_REF(b.Wp, 0),
                                                                  .src = QD_REF(W, 0), .perm = QD_REF(b.perm, 0),
                                                                  .rows = N, .cols = K}), st, done);
        QD_CHECK_GOTO(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_SYM, .dst = QD_REF(b.Hp, 0),
                                                                  .src = QD_REF(H, 0), .perm = QD_REF(b.perm, 0),
                                                                  .rows = K, .cols = K}), st, done);
        Wq = b.Wp;
        Hq = b.Hp;
    }
    /* damping with retries; the factor overwrites its input, so each attempt starts from Hq */
    double mean = 0;
    for (size_t k = 0; k < K; k++) mean += diag[k];
    mean /= (double)K;
    QD_CHECK_GOTO(qd_buf_alloc(be, K * K, &b.U), st, done);
    double damp = s->damp;
    int ok = 0, attempt = 0;
    for (; next_damp(s->damp, attempt, &damp); attempt++) {
        QD_CHECK_GOTO(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(b.U, 0), .src = QD_REF(Hq, 0), .rows = 1,
                                                            .cols = K * K, .ldd = K * K, .lds = K * K}), st, done);
        QD_CHECK_GOTO(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(b.U, 0), .n = K,
                                                                    .scalar = (float)(damp * mean)}), st, done);
        st = qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = QD_REF(b.U, 0), .n = K});
        if (st == QD_OK) {
            ok = 1;
            break;
        }
        if (st != QD_ERR_NUMERIC) goto done;
    }
    out->fallback[0] = 0;
    if (!ok) {
        snprintf(out->fallback, sizeof out->fallback,
                 "Cholesky failed for damp %.4g..%.4g (%d attempts): RTN (Hinv = I)", s->damp, damp, attempt);
        qd_warn("%s: %s", name, out->fallback);
        damp = -1;
        QD_CHECK_GOTO(qd_be_fill(be, &(struct qd_fill_args){.dst = QD_REF(b.U, 0), .n = K * K}), st, done);
        QD_CHECK_GOTO(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(b.U, 0), .n = K, .scalar = 1}), st, done);
    } else if (attempt > 0) {
        snprintf(out->fallback, sizeof out->fallback, "damp raised from %.4g to %.4g after %d Cholesky failures",
                 s->damp, damp, attempt);
        qd_warn("%s: %s", name, out->fallback);
    }
    qd_phase_set(be, QD_PH_SWEEP);
    QD_CHECK_GOTO(qd_buf_alloc(be, N * K, &b.codes_p), st, done);
    double loss;
    QD_CHECK_GOTO(qd_be_gptq_sweep(be, &(struct qd_gptq_sweep_args){.cfg = cfg, .W = QD_REF(Wq, 0), .U = QD_REF(b.U, 0),
                                                                     .codes = QD_REF(b.codes_p, 0),
                                                                     .scales = QD_REF(b.scales, 0),
                                                                     .zeros = QD_REF(b.zeros, 0),
                                                                     .perm = act ? QD_REF(b.perm, 0) : QD_REF(NULL, 0),
                                                                     .N = N, .K = K, .group_size = grouped ? gs : 0,
                                                                     .block_size = QD_GPTQ_BLOCK,
                                                                     .static_groups = stat || !grouped, .loss_out = &loss}),
                  st, done);
    qd_buf_t codes = b.codes_p;
    if (act) { /* back to the original column order */
        QD_CHECK_GOTO(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_COLS, .dst = QD_REF(W, 0),
                                                                  .src = QD_REF(b.Wp, 0), .perm = QD_REF(b.invperm, 0),
                                                                  .rows = N, .cols = K}), st, done);
        QD_CHECK_GOTO(qd_buf_alloc(be, N * K, &b.codes), st, done);
        QD_CHECK_GOTO(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_COLS, .dst = QD_REF(b.codes, 0),
                                                                  .src = QD_REF(b.codes_p, 0),
                                                                  .perm = QD_REF(b.invperm, 0), .rows = N, .cols = K}),
                      st, done);
        codes = b.codes;
    }
    for (size_t k = 0; k < K; k++)
        g_idx[k] = !grouped ? 0 : (act && !stat ? invperm[k] / (int32_t)gs : (int32_t)(k / gs));
    qd_phase_set(be, QD_PH_INSTALL);
    QD_CHECK_GOTO(qd_qresult_fetch(be, s, name, codes, b.scales, b.zeros, g_idx, N, K, G, out), st, done);
    out->loss = loss;
    out->damp = damp;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
done:
    free_bufs(&b);
    free(diag), free(mask), free(perm), free(invperm), free(g_idx);
    qd_phase_set(be, prev);
    return st;
}
