/* SPDX-License-Identifier: MIT
 * exact.c - the CPU backend's exact numerics (qd-backend.h QD_NUMERICS_EXACT, kernels/qd-exact.h):
 * the fixed-order fp64 GEMM every exact op is built on, and the exact GEMM, Hessian, attention and
 * reductions. No BLAS: OpenBLAS sums in an order of its own choosing (blocking, threads), and the
 * CUDA backend must be able to compute the same bits. Work is split over threads by whole output
 * rows (GEMM) or (sequence, head) items (attention), which never changes any element's order, so the
 * bits do not depend on the thread count either.
 *
 * The order: C[i][j] = sum over k = 0, 1, ..., K-1 of (double)opA(i,k) * (double)opB(k,j), starting
 * from 0.0, one double add per term (the product of two floats is exact in double). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-ops.h"
#include "qd-check.h"
#include "qd-exact.h"
#include "qd-log.h"

/* ---- threads: items 0..n-1, item i on worker i % nt (interleaved: triangular work balances) ---- */
typedef qd_status (*item_fn)(void *arg, size_t item, void *scratch);
typedef struct {
    item_fn fn;
    void *arg;
    size_t n, scratch_bytes;
    int nt, w;
    qd_status st;
} worker;

static void *run_worker(void *p) {
    worker *w = p;
    void *scratch = w->scratch_bytes ? malloc(w->scratch_bytes) : NULL;
    if (w->scratch_bytes && !scratch) {
        w->st = QD_ERR_NOMEM;
        return NULL;
    }
    for (size_t i = (size_t)w->w; i < w->n && w->st == QD_OK; i += (size_t)w->nt) w->st = w->fn(w->arg, i, scratch);
    free(scratch);
    return NULL;
}

static qd_status parallel(int nthreads, size_t n, size_t scratch_bytes, item_fn fn, void *arg, const char *what) {
    int nt = nthreads < 1 ? 1 : nthreads;
    if ((size_t)nt > n) nt = n ? (int)n : 1;
    worker *ws = calloc((size_t)nt, sizeof *ws);
    pthread_t *th = calloc((size_t)nt, sizeof *th);
    int *started = calloc((size_t)nt, sizeof *started);
    if (!ws || !th || !started) {
        free(ws), free(th), free(started);
        return qd_fail(QD_ERR_NOMEM, "cpu backend: %s: out of memory for %d threads", what, nt);
    }
    for (int t = 0; t < nt; t++) ws[t] = (worker){.fn = fn, .arg = arg, .n = n, .scratch_bytes = scratch_bytes, .nt = nt, .w = t};
    /* worker 0 runs here; a thread that cannot start leaves its items to a second pass below */
    for (int t = 1; t < nt; t++) started[t] = pthread_create(&th[t], NULL, run_worker, &ws[t]) == 0;
    run_worker(&ws[0]);
    qd_status st = ws[0].st;
    for (int t = 1; t < nt; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        else run_worker(&ws[t]);
        if (st == QD_OK) st = ws[t].st;
    }
    free(ws), free(th), free(started);
    if (st == QD_ERR_NOMEM && !qd_last_error()[0])
        return qd_fail(QD_ERR_NOMEM, "cpu backend: %s: out of memory for thread scratch (%zu bytes)", what, scratch_bytes);
    return st;
}

/* ---- the fixed-order GEMM ---- */
#define XG_R 4  /* rows per item */
#define XG_NB 64 /* columns per block: 4 x 64 doubles of accumulators stay in L1 */

#define XG_ITEM 32 /* rows per thread item: one packed op(B) block serves 8 row blocks */

typedef struct {
    const qd_cpu_xg *g;
} xg_job;

static inline float opb(const qd_cpu_xg *g, size_t k, size_t j) {
    return g->tb ? g->B[j * g->ldb + k] : g->B[k * g->ldb + j];
}

/* acc[r][j] += a_r * Bp[k][j] for k in order; Bp is K x XG_NB (zero-padded columns). Four separate
 * accumulator rows, a constant trip count: the j loop vectorizes, each element's order stays k. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void xg_block(const float *a0, const float *a1, const float *a2, const float *a3, size_t astep, size_t K,
                     const float *Bp, double *restrict c0, double *restrict c1, double *restrict c2,
                     double *restrict c3) {
    for (size_t k = 0; k < K; k++) {
        double x0 = a0[k * astep], x1 = a1[k * astep], x2 = a2[k * astep], x3 = a3[k * astep];
        const float *b = Bp + k * XG_NB;
        for (int j = 0; j < XG_NB; j++) {
            double bj = b[j];
            c0[j] += x0 * bj;
            c1[j] += x1 * bj;
            c2[j] += x2 * bj;
            c3[j] += x3 * bj;
        }
    }
}

/* one item = XG_ITEM rows (blocks of XG_R), all column blocks; scratch: the packed op(B) block
 * (K x XG_NB floats, rebuilt per column block and shared by the item's row blocks) and the
 * accumulators. */
static qd_status xg_item(void *arg, size_t item, void *scratch) {
    const xg_job *jb = arg;
    const qd_cpu_xg *g = jb->g;
    float *Bp = scratch;
    double *acc = (double *)(Bp + (g->K * XG_NB + 1) / 2 * 2);
    size_t r0 = item * XG_ITEM, r1 = r0 + XG_ITEM < g->M ? r0 + XG_ITEM : g->M;
    size_t astep = g->ta ? g->lda : 1;
    for (size_t j0 = 0; j0 < g->N; j0 += XG_NB) {
        size_t nb = g->N - j0 < XG_NB ? g->N - j0 : XG_NB;
        if (g->upper && j0 + nb <= r0) continue; /* every (i, j) of the item has j < i */
        for (size_t k = 0; k < g->K; k++)
            for (size_t j = 0; j < XG_NB; j++) Bp[k * XG_NB + j] = j < nb ? opb(g, k, j0 + j) : 0.0f;
        for (size_t i0 = r0; i0 < r1; i0 += XG_R) {
            size_t R = r1 - i0 < XG_R ? r1 - i0 : XG_R;
            if (g->upper && j0 + nb <= i0) continue;
            /* rows past R repeat the first row (computed, never stored) */
            const float *ap[XG_R];
            for (size_t r = 0; r < XG_R; r++) {
                size_t i = r < R ? i0 + r : i0;
                ap[r] = g->ta ? g->A + i : g->A + i * g->lda;
            }
            memset(acc, 0, XG_R * XG_NB * sizeof *acc);
            xg_block(ap[0], ap[1], ap[2], ap[3], astep, g->K, Bp, acc, acc + XG_NB, acc + 2 * XG_NB, acc + 3 * XG_NB);
            for (size_t r = 0; r < R; r++) {
                size_t i = i0 + r;
                for (size_t j = 0; j < nb; j++) {
                    if (g->upper && j0 + j < i) continue;
                    double v = acc[r * XG_NB + j];
                    if (g->Cd) {
                        g->Cd[i * g->ldcd + j0 + j] = v;
                    } else {
                        float *c = g->C + i * g->ldc + j0 + j;
                        *c = qd_exact_out(v, g->alpha, g->beta, g->beta != 0.0 ? *c : 0.0f);
                    }
                }
            }
        }
    }
    return QD_OK;
}

qd_status qd_cpu_xgemm(int nthreads, const qd_cpu_xg *g) {
    if (!g->M || !g->N) return QD_OK;
    xg_job jb = {.g = g};
    size_t scratch = ((g->K * XG_NB + 1) / 2 * 2) * sizeof(float) + XG_R * XG_NB * sizeof(double);
    return parallel(nthreads, (g->M + XG_ITEM - 1) / XG_ITEM, scratch, xg_item, &jb, "exact gemm");
}

static int threads_of(qd_backend_t be) { return ((qd_cpu_ctx *)be->ctx)->nthreads; }

qd_status qd_cpu_gemm_exact(qd_backend_t be, const struct qd_gemm_args *a) {
    qd_cpu_xg g = {.ta = a->trans_a, .tb = a->trans_b, .M = a->M, .N = a->N, .K = a->K, .A = qd_ref_f32(a->A),
                      .lda = a->lda, .B = qd_ref_f32(a->B), .ldb = a->ldb, .C = qd_ref_f32(a->C), .ldc = a->ldc,
                      .alpha = (double)a->alpha, .beta = (double)a->beta};
    return qd_cpu_xgemm(threads_of(be), &g);
}

/* H = (float)(alpha * X^T X + beta * H) on the upper triangle (t in order), then mirrored: the same
 * elements, order and epilogue as the CUDA backend's. */
qd_status qd_cpu_hessian_exact(qd_backend_t be, const struct qd_hessian_args *a) {
    float *H = qd_ref_f32(a->H);
    const float *X = qd_ref_f32(a->X);
    qd_cpu_xg g = {.ta = 1, .tb = 0, .upper = 1, .M = a->K, .N = a->K, .K = a->T, .A = X, .lda = a->ldx, .B = X,
                      .ldb = a->ldx, .C = H, .ldc = a->K, .alpha = (double)a->alpha, .beta = (double)a->beta};
    QD_CHECK(qd_cpu_xgemm(threads_of(be), &g));
    for (size_t i = 0; i < a->K; i++)
        for (size_t j = i + 1; j < a->K; j++) H[j * a->K + i] = H[i * a->K + j];
    return QD_OK;
}

/* ---- attention: per query row, scores (qd_exact_score), max, then in key order
 * p = qd_exact_softmax_num, sum += p, acc_d += p v_d (fp64), out_d = (float)(acc_d / sum) ---- */
static qd_status attn_item(void *arg, size_t item, void *scratch) {
    const struct qd_attention_args *a = arg;
    size_t T = a->seq_len, D = a->head_dim, group = a->heads / a->kv_heads;
    size_t qld = a->heads * D, kld = a->kv_heads * D;
    size_t s = item / a->heads, h = item % a->heads, kh = h / group;
    const float *q = qd_ref_f32(a->q) + s * T * qld + h * D;
    const float *k = qd_ref_f32(a->k) + s * T * kld + kh * D;
    const float *v = qd_ref_f32(a->v) + s * T * kld + kh * D;
    float *o = qd_ref_f32(a->out) + s * T * qld + h * D;
    float *sc = scratch;
    double *acc = (double *)(sc + (T + 1) / 2 * 2);
    for (size_t t = 0; t < T; t++) {
        const float *qt = q + t * qld;
        size_t lo = a->window && t + 1 > a->window ? t + 1 - a->window : 0;
        float mx = -INFINITY;
        size_t c = lo;
        /* four keys at a time: four independent chains, each in d order as qd_exact_score */
        for (; c + 4 <= t + 1; c += 4) {
            const float *k0 = k + c * kld, *k1 = k0 + kld, *k2 = k1 + kld, *k3 = k2 + kld;
            double d0 = 0.0, d1 = 0.0, d2 = 0.0, d3 = 0.0;
            for (size_t d = 0; d < D; d++) {
                double qd = qt[d];
                d0 += qd * (double)k0[d];
                d1 += qd * (double)k1[d];
                d2 += qd * (double)k2[d];
                d3 += qd * (double)k3[d];
            }
            sc[c] = (float)((double)a->scale * d0);
            sc[c + 1] = (float)((double)a->scale * d1);
            sc[c + 2] = (float)((double)a->scale * d2);
            sc[c + 3] = (float)((double)a->scale * d3);
        }
        for (; c <= t; c++) sc[c] = qd_exact_score(qt, k + c * kld, D, a->scale);
        for (c = lo; c <= t; c++) mx = fmaxf(mx, sc[c]);
        double sum = 0.0;
        memset(acc, 0, D * sizeof *acc);
        for (c = lo; c <= t; c++) {
            float p = qd_exact_softmax_num(sc[c], mx);
            double pd = p;
            const float *vc = v + c * kld;
            sum += pd;
            for (size_t d = 0; d < D; d++) acc[d] += pd * (double)vc[d];
        }
        float *ot = o + t * qld;
        for (size_t d = 0; d < D; d++) ot[d] = (float)(acc[d] / sum);
    }
    return QD_OK;
}

qd_status qd_cpu_attention_exact(qd_backend_t be, const struct qd_attention_args *a) {
    size_t scratch = (a->seq_len + 1) / 2 * 2 * sizeof(float) + a->head_dim * sizeof(double);
    return parallel(threads_of(be), a->nseq * a->heads, scratch, attn_item, (void *)a, "exact attention");
}

/* ---- reductions: partial sums over chunks of QD_EXACT_CHUNK elements in order, then the partials in
 * order (the CUDA backend runs one thread per chunk, then one thread over the partials) ---- */
qd_status qd_cpu_reduce_exact(qd_backend_t be, const struct qd_reduce_args *a) {
    (void)be;
    const float *x = qd_ref_f32(a->a);
    const float *y = a->b.buf ? qd_ref_f32(a->b) : NULL;
    double total = 0;
    for (size_t c0 = 0; c0 < a->n; c0 += QD_EXACT_CHUNK) {
        size_t c1 = c0 + QD_EXACT_CHUNK < a->n ? c0 + QD_EXACT_CHUNK : a->n;
        double part = 0;
        for (size_t i = c0; i < c1; i++) {
            switch (a->kind) {
            case QD_RED_SQDIFF: { double d = (double)x[i] - (double)y[i]; part += d * d; } break;
            case QD_RED_SUMSQ: part += (double)x[i] * (double)x[i]; break;
            case QD_RED_NONFINITE: part += !isfinite(x[i]); break;
            case QD_RED_ABSMAX: if (fabs((double)x[i]) > part) part = fabs((double)x[i]); break;
            }
        }
        if (a->kind == QD_RED_ABSMAX) total = part > total ? part : total;
        else total += part;
    }
    *a->out = total;
    return QD_OK;
}
