/* SPDX-License-Identifier: MIT
 * test-backend-ops.c - every op of the CPU backend against a naive double-precision loop written here,
 * on random data drawn fresh each run (the seed is printed; QD_TEST_SEED=N replays a run). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "qd-backend-cpu.h"
#include "qd-backend.h"
#include "qd-log.h"
#include "qd-test.h"

static qd_backend_t be;
static uint64_t rng_state;

static double urand(void) { /* splitmix64 -> [0, 1) */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(2 * M_PI * urand())); }

static float *rand_vec(size_t n) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = nrand();
    return v;
}

static qd_buf_t up(const void *src, size_t n) {
    qd_buf_t b = NULL;
    if (qd_buf_alloc(be, n, &b) != QD_OK) exit(1);
    if (src && qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b, 0), .src = src, .src_dtype = QD_DT_F32, .n = n}) != QD_OK)
        exit(1);
    return b;
}
static float *down(qd_buf_t b) {
    float *h = malloc(qd_buf_len(b) * sizeof *h);
    if (qd_be_download(be, &(struct qd_download_args){.src = QD_REF(b, 0), .dst = h, .n = qd_buf_len(b)}) != QD_OK) exit(1);
    return h;
}
static double max_rel(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs(a[i] - ref[i]));
        den = fmax(den, fabs(ref[i]));
    }
    return num / (den > 0 ? den : 1);
}

static void test_gemm(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            size_t M = 7, N = 13, K = 29;
            float *A = rand_vec(M * K), *B = rand_vec(K * N), *C = rand_vec(M * N);
            double ref[7 * 13];
            for (size_t i = 0; i < M; i++)
                for (size_t j = 0; j < N; j++) {
                    double s = 0;
                    for (size_t k = 0; k < K; k++)
                        s += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
                    ref[i * N + j] = 0.5 * s + 2.0 * C[i * N + j];
                }
            qd_buf_t bA = up(A, M * K), bB = up(B, K * N), bC = up(C, M * N);
            QD_EXPECT_EQ_INT(qd_be_gemm(be, &(struct qd_gemm_args){.trans_a = ta, .trans_b = tb, .M = M, .N = N, .K = K,
                                                                  .alpha = 0.5f, .beta = 2.0f, .A = QD_REF(bA, 0),
                                                                  .B = QD_REF(bB, 0), .C = QD_REF(bC, 0),
                                                                  .lda = ta ? M : K, .ldb = tb ? K : N, .ldc = N}),
                             QD_OK);
            float *got = down(bC);
            QD_EXPECT(max_rel(got, ref, M * N) < 1e-5);
            free(got), free(A), free(B), free(C);
            qd_buf_free(bA), qd_buf_free(bB), qd_buf_free(bC);
        }
    /* out-of-bounds operand is refused */
    qd_buf_t small = up(NULL, 4);
    QD_EXPECT_EQ_INT(qd_be_gemm(be, &(struct qd_gemm_args){.M = 2, .N = 2, .K = 2, .alpha = 1, .A = QD_REF(small, 1),
                                                          .B = QD_REF(small, 0), .C = QD_REF(small, 0), .lda = 2,
                                                          .ldb = 2, .ldc = 2}),
                     QD_ERR_INTERNAL);
    qd_clear_error();
    qd_buf_free(small);
}

static void test_hessian_chol(void) {
    size_t T = 50, K = 16;
    float *X = rand_vec(T * K);
    double H[16 * 16];
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) {
            double s = 0;
            for (size_t t = 0; t < T; t++) s += (double)X[t * K + i] * X[t * K + j];
            H[i * K + j] = 2.0 / T * s + (i == j ? 0.1 : 0);
        }
    qd_buf_t bX = up(X, T * K), bH = up(NULL, K * K);
    /* two batches accumulate like one */
    QD_EXPECT_EQ_INT(qd_be_hessian(be, &(struct qd_hessian_args){.H = QD_REF(bH, 0), .X = QD_REF(bX, 0), .T = 20, .K = K,
                                                                 .ldx = K, .alpha = 2.0f / T, .beta = 1}), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_hessian(be, &(struct qd_hessian_args){.H = QD_REF(bH, 0), .X = QD_REF(bX, 20 * K), .T = 30,
                                                                 .K = K, .ldx = K, .alpha = 2.0f / T, .beta = 1}), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(bH, 0), .n = K, .scalar = 0.1f}), QD_OK);
    float *got = down(bH);
    QD_EXPECT(max_rel(got, H, K * K) < 1e-5);
    free(got);
    QD_EXPECT_EQ_INT(qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = QD_REF(bH, 0), .n = K}), QD_OK);
    float *U = down(bH);
    /* U upper, and (U^T U) H = I */
    double worst = 0;
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) {
            if (j < i) QD_EXPECT(U[i * K + j] == 0.0f);
            double s = 0;
            for (size_t k = 0; k < K; k++) {
                double hi = 0;
                for (size_t m = 0; m < K; m++) hi += (double)U[m * K + i] * U[m * K + k];
                s += hi * H[k * K + j];
            }
            worst = fmax(worst, fabs(s - (i == j)));
        }
    QD_EXPECT(worst < 1e-3);
    for (size_t i = 0; i < K; i++) QD_EXPECT(U[i * K + i] > 0);
    free(U);
    /* not positive definite: QD_ERR_NUMERIC and no message */
    float bad[4] = {1, 2, 2, 1};
    qd_buf_t bB = up(bad, 4);
    qd_clear_error();
    QD_EXPECT_EQ_INT(qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = QD_REF(bB, 0), .n = 2}), QD_ERR_NUMERIC);
    QD_EXPECT(qd_last_error()[0] == 0);
    qd_buf_free(bB), qd_buf_free(bX), qd_buf_free(bH);
    free(X);
}

static void test_permute_ewise(void) {
    size_t R = 5, C = 6;
    float *A = rand_vec(R * C), *Bm = rand_vec(R * C), *v = rand_vec(C > R ? C : R);
    int32_t perm[6] = {3, 0, 5, 1, 4, 2};
    qd_buf_t bA = up(A, R * C), bB = up(Bm, R * C), bv = up(v, C), bO = up(NULL, R * C), bP = up(NULL, 6);
    qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bP, 0), .src = perm, .src_dtype = QD_DT_I32, .n = 6});
    QD_EXPECT_EQ_INT(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_COLS, .dst = QD_REF(bO, 0),
                                                                 .src = QD_REF(bA, 0), .perm = QD_REF(bP, 0), .rows = R, .cols = C}), QD_OK);
    float *o = down(bO);
    int okp = 1;
    for (size_t r = 0; r < R; r++)
        for (size_t j = 0; j < C; j++) okp &= o[r * C + j] == A[r * C + perm[j]];
    QD_EXPECT(okp);
    free(o);
    static const qd_ew_kind kinds[] = {QD_EW_ADD, QD_EW_MUL, QD_EW_SWIGLU, QD_EW_ADD_ROWV, QD_EW_MUL_COLV,
                                       QD_EW_DIV_COLV, QD_EW_MUL_ROWV, QD_EW_DIV_ROWV, QD_EW_SCALE};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        QD_EXPECT_EQ_INT(qd_be_ewise(be, &(struct qd_ewise_args){.kind = kinds[k], .out = QD_REF(bO, 0), .x = QD_REF(bA, 0),
                                                                 .y = QD_REF(bB, 0), .v = QD_REF(bv, 0), .rows = R,
                                                                 .cols = C, .ld = C, .scalar = 1.5f}), QD_OK);
        o = down(bO);
        double ref[30];
        for (size_t r = 0; r < R; r++)
            for (size_t c = 0; c < C; c++) {
                double x = A[r * C + c], y = Bm[r * C + c];
                double e = 0;
                switch (kinds[k]) {
                case QD_EW_ADD: e = x + y; break;
                case QD_EW_MUL: e = x * y; break;
                case QD_EW_SWIGLU: e = x / (1 + exp(-x)) * y; break;
                case QD_EW_ADD_ROWV: e = x + v[c]; break;
                case QD_EW_MUL_COLV: e = x * v[c]; break;
                case QD_EW_DIV_COLV: e = x / v[c]; break;
                case QD_EW_MUL_ROWV: e = x * v[r]; break;
                case QD_EW_DIV_ROWV: e = x / v[r]; break;
                case QD_EW_SCALE: e = x * 1.5; break;
                }
                ref[r * C + c] = e;
            }
        double err = 0;
        for (size_t i = 0; i < R * C; i++) err = fmax(err, fabs(o[i] - ref[i]) / fmax(1, fabs(ref[i])));
        if (err > 1e-5) fprintf(stderr, "ewise kind %d: err %g\n", (int)kinds[k], err);
        QD_EXPECT(err <= 1e-5);
        free(o);
    }
    /* reductions and column statistics */
    double r;
    qd_be_reduce(be, &(struct qd_reduce_args){.kind = QD_RED_SQDIFF, .a = QD_REF(bA, 0), .b = QD_REF(bB, 0), .n = R * C, .out = &r});
    double ref = 0;
    for (size_t i = 0; i < R * C; i++) ref += ((double)A[i] - Bm[i]) * ((double)A[i] - Bm[i]);
    QD_EXPECT_NEAR(r, ref, 1e-6 * ref);
    float nanv[3] = {1, NAN, INFINITY};
    qd_buf_t bn = up(nanv, 3);
    qd_be_reduce(be, &(struct qd_reduce_args){.kind = QD_RED_NONFINITE, .a = QD_REF(bn, 0), .n = 3, .out = &r});
    QD_EXPECT_EQ_INT((int)r, 2);
    qd_buf_free(bn);
    qd_buf_t bs = up(NULL, C);
    qd_be_colstat(be, &(struct qd_colstat_args){.kind = QD_COLSTAT_GROUP_NORM_SUM, .out = QD_REF(bs, 0),
                                                .src = QD_REF(bA, 0), .rows = R, .cols = C, .ld = C, .group_size = 3});
    float *s = down(bs);
    double err = 0;
    for (size_t c = 0; c < C; c++) {
        double e = 0;
        for (size_t rr = 0; rr < R; rr++) {
            double m = 0;
            for (size_t c2 = c / 3 * 3; c2 < c / 3 * 3 + 3; c2++) m = fmax(m, fabs(A[rr * C + c2]));
            e += fabs(A[rr * C + c]) / (m + 1e-6);
        }
        err = fmax(err, fabs(e - s[c]));
    }
    QD_EXPECT(err < 1e-5);
    free(s);
    qd_be_colstat(be, &(struct qd_colstat_args){.kind = QD_COLSTAT_ABS_SUM, .out = QD_REF(bs, 0), .src = QD_REF(bA, 0),
                                                .rows = R, .cols = C, .ld = C});
    s = down(bs);
    err = 0;
    for (size_t c = 0; c < C; c++) {
        double e = 0;
        for (size_t rr = 0; rr < R; rr++) e += fabs(A[rr * C + c]);
        err = fmax(err, fabs(e - s[c]));
    }
    QD_EXPECT(err < 1e-5);
    free(s);
    qd_buf_free(bs);
    qd_buf_free(bA), qd_buf_free(bB), qd_buf_free(bv), qd_buf_free(bO), qd_buf_free(bP);
    free(A), free(Bm), free(v);
}

static void test_norm_rope_attention(void) {
    size_t nseq = 2, T = 9, H = 4, KV = 2, hd = 8, D = H * hd;
    size_t rows = nseq * T;
    float *x = rand_vec(rows * D), *w = rand_vec(D);
    qd_buf_t bx = up(x, rows * D), bw = up(w, D), bo = up(NULL, rows * D);
    qd_be_rmsnorm(be, &(struct qd_rmsnorm_args){.out = QD_REF(bo, 0), .x = QD_REF(bx, 0), .weight = QD_REF(bw, 0),
                                                .rows = rows, .dim = D, .ld = D, .eps = 1e-5f});
    float *o = down(bo);
    double err = 0;
    for (size_t r = 0; r < rows; r++) {
        double ss = 0;
        for (size_t c = 0; c < D; c++) ss += (double)x[r * D + c] * x[r * D + c];
        double inv = 1 / sqrt(ss / D + 1e-5);
        for (size_t c = 0; c < D; c++) err = fmax(err, fabs(o[r * D + c] - x[r * D + c] * inv * w[c]));
    }
    QD_EXPECT(err < 1e-5);
    free(o);
    /* rope with random angles */
    size_t half = hd / 2;
    float *cs = malloc(T * half * 4), *sn = malloc(T * half * 4);
    for (size_t i = 0; i < T * half; i++) {
        double ang = urand() * 6;
        cs[i] = (float)cos(ang);
        sn[i] = (float)sin(ang);
    }
    qd_buf_t bc = up(cs, T * half), bs = up(sn, T * half);
    qd_be_rope(be, &(struct qd_rope_args){.x = QD_REF(bx, 0), .cos = QD_REF(bc, 0), .sin = QD_REF(bs, 0), .rows = rows,
                                          .heads = H, .head_dim = hd, .ld = D, .seq_len = T});
    o = down(bx);
    err = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < hd; i++) {
                size_t p = r % T, j = i % half;
                double x1 = x[r * D + h * hd + j], x2 = x[r * D + h * hd + j + half];
                double e = i < half ? x1 * cs[p * half + j] - x2 * sn[p * half + j] : x2 * cs[p * half + j] + x1 * sn[p * half + j];
                err = fmax(err, fabs(o[r * D + h * hd + i] - e));
            }
    QD_EXPECT(err < 1e-5);
    free(o);
    /* attention, causal GQA, with and without a window */
    for (size_t window = 0; window <= 3; window += 3) {
        float *q = rand_vec(rows * D), *k = rand_vec(rows * KV * hd), *v = rand_vec(rows * KV * hd);
        qd_buf_t bq = up(q, rows * D), bk = up(k, rows * KV * hd), bv = up(v, rows * KV * hd);
        float scale = 1.0f / sqrtf((float)hd);
        QD_EXPECT_EQ_INT(qd_be_attention(be, &(struct qd_attention_args){.out = QD_REF(bo, 0), .q = QD_REF(bq, 0),
                                                                         .k = QD_REF(bk, 0), .v = QD_REF(bv, 0),
                                                                         .nseq = nseq, .seq_len = T, .heads = H,
                                                                         .kv_heads = KV, .head_dim = hd,
                                                                         .window = window, .scale = scale}), QD_OK);
        o = down(bo);
        err = 0;
        for (size_t s = 0; s < nseq; s++)
            for (size_t h = 0; h < H; h++)
                for (size_t i = 0; i < T; i++) {
                    size_t kh = h / (H / KV);
                    double sc[16], m = -1e300, sum = 0;
                    size_t j0 = window && i + 1 > window ? i + 1 - window : 0;
                    for (size_t j = j0; j <= i; j++) {
                        double d = 0;
                        for (size_t c = 0; c < hd; c++)
                            d += (double)q[(s * T + i) * D + h * hd + c] * k[(s * T + j) * KV * hd + kh * hd + c];
                        sc[j] = d * scale;
                        m = fmax(m, sc[j]);
                    }
                    for (size_t j = j0; j <= i; j++) sum += (sc[j] = exp(sc[j] - m));
                    for (size_t c = 0; c < hd; c++) {
                        double acc = 0;
                        for (size_t j = j0; j <= i; j++) acc += sc[j] / sum * v[(s * T + j) * KV * hd + kh * hd + c];
                        err = fmax(err, fabs(acc - o[(s * T + i) * D + h * hd + c]));
                    }
                }
        QD_EXPECT(err < 1e-5);
        free(o), free(q), free(k), free(v);
        qd_buf_free(bq), qd_buf_free(bk), qd_buf_free(bv);
    }
    /* cross entropy */
    size_t V = 11;
    float *logits = rand_vec(rows * V);
    int32_t tg[18];
    for (size_t r = 0; r < rows; r++) tg[r] = (int32_t)(urand() * V);
    qd_buf_t bl = up(logits, rows * V), bt = up(NULL, rows);
    qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bt, 0), .src = tg, .src_dtype = QD_DT_I32, .n = rows});
    double sum, ref = 0;
    qd_be_cross_entropy(be, &(struct qd_xent_args){.logits = QD_REF(bl, 0), .targets = QD_REF(bt, 0), .rows = rows,
                                                   .vocab = V, .sum_out = &sum});
    for (size_t r = 0; r < rows; r++) {
        double se = 0;
        for (size_t c = 0; c < V; c++) se += exp(logits[r * V + c]);
        ref += log(se) - logits[r * V + tg[r]];
    }
    QD_EXPECT_NEAR(sum, ref, 1e-6 * fabs(ref));
    qd_buf_free(bl), qd_buf_free(bt), qd_buf_free(bc), qd_buf_free(bs);
    qd_buf_free(bx), qd_buf_free(bw), qd_buf_free(bo);
    free(x), free(w), free(cs), free(sn), free(logits);
}

/* sequences longer than the CPU backend's query tile, with and without a sliding window */
static void test_attention_long(void) {
    size_t nseq = 1, T = 300, H = 2, KV = 1, hd = 16, D = H * hd, rows = nseq * T;
    for (size_t window = 0; window <= 100; window += 100) {
        float *q = rand_vec(rows * D), *k = rand_vec(rows * KV * hd), *v = rand_vec(rows * KV * hd);
        qd_buf_t bq = up(q, rows * D), bk = up(k, rows * KV * hd), bv = up(v, rows * KV * hd), bo = up(NULL, rows * D);
        float scale = 0.25f;
        QD_EXPECT_EQ_INT(qd_be_attention(be, &(struct qd_attention_args){.out = QD_REF(bo, 0), .q = QD_REF(bq, 0),
                                                                         .k = QD_REF(bk, 0), .v = QD_REF(bv, 0),
                                                                         .nseq = nseq, .seq_len = T, .heads = H,
                                                                         .kv_heads = KV, .head_dim = hd,
                                                                         .window = window, .scale = scale}), QD_OK);
        float *o = down(bo);
        double err = 0, *sc = malloc(T * sizeof *sc);
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < T; i++) {
                double m = -1e300, sum = 0;
                size_t j0 = window && i + 1 > window ? i + 1 - window : 0;
                for (size_t j = j0; j <= i; j++) {
                    double d = 0;
                    for (size_t c = 0; c < hd; c++) d += (double)q[i * D + h * hd + c] * k[j * hd + c];
                    sc[j] = d * scale;
                    m = fmax(m, sc[j]);
                }
                for (size_t j = j0; j <= i; j++) sum += (sc[j] = exp(sc[j] - m));
                for (size_t c = 0; c < hd; c++) {
                    double acc = 0;
                    for (size_t j = j0; j <= i; j++) acc += sc[j] / sum * v[j * hd + c];
                    err = fmax(err, fabs(acc - o[i * D + h * hd + c]));
                }
            }
        QD_EXPECT(err < 1e-5);
        free(o), free(q), free(k), free(v), free(sc);
        qd_buf_free(bq), qd_buf_free(bk), qd_buf_free(bv), qd_buf_free(bo);
    }
}

/* the reference quantizer, written from docs/reference/algorithms.md in double where it does not matter */
static void ref_params(int bits, int sym, int awq, const float *x, size_t n, float *scale, float *zero) {
    float maxq = (float)((1 << bits) - 1), mn = x[0], mx = x[0];
    for (size_t i = 1; i < n; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    if (awq) {
        *scale = fmaxf(mx - mn, 1e-5f) / maxq;
        *zero = fminf(fmaxf(-nearbyintf(mn / *scale), 0), maxq);
        return;
    }
    mn = fminf(mn, 0), mx = fmaxf(mx, 0);
    if (sym) mx = fmaxf(-mn, mx), mn = -mx;
    if (mn == 0 && mx == 0) mn = -1, mx = 1;
    *scale = (mx - mn) / maxq;
    *zero = sym ? (maxq + 1) / 2 : nearbyintf(-mn / *scale);
}

static void test_quantize(void) {
    size_t N = 6, K = 64;
    for (int mode = 0; mode < 3; mode++) {
        int sym = mode == 1, awq = mode == 2, bits = mode == 1 ? 3 : 4;
        size_t gs = mode == 0 ? 16 : 32, G = K / gs;
        float *W = rand_vec(N * K);
        for (size_t k = 0; k < gs; k++) W[k] = 0; /* an all-zero group: range [-1, 1] */
        qd_buf_t bW = up(W, N * K), bQ = up(NULL, N * K), bc = up(NULL, N * K), bs = up(NULL, G * N), bz = up(NULL, G * N);
        qd_qcfg cfg = {.kind = awq ? QD_QZ_AWQ : QD_QZ_MINMAX, .bits = bits, .sym = sym};
        QD_EXPECT_EQ_INT(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = cfg, .W = QD_REF(bW, 0), .Q = QD_REF(bQ, 0),
                                                                      .codes = QD_REF(bc, 0), .scales = QD_REF(bs, 0),
                                                                      .zeros = QD_REF(bz, 0), .N = N, .K = K, .ldw = K,
                                                                      .group_size = gs}), QD_OK);
        float *Q = down(bQ), *S = down(bs);
        int32_t *codes = (int32_t *)down(bc), *Z = (int32_t *)down(bz);
        int bad = 0;
        for (size_t n = 0; n < N; n++)
            for (size_t g = 0; g < G; g++) {
                float sc, ze, maxq = (float)((1 << bits) - 1);
                ref_params(bits, sym, awq, W + n * K + g * gs, gs, &sc, &ze);
                bad += S[g * N + n] != sc || Z[g * N + n] != (int32_t)ze;
                for (size_t k = g * gs; k < (g + 1) * gs; k++) {
                    float q = fminf(fmaxf(nearbyintf(W[n * K + k] / sc) + ze, 0), maxq);
                    bad += codes[n * K + k] != (int32_t)q || Q[n * K + k] != sc * (q - ze);
                }
            }
        QD_EXPECT_EQ_INT(bad, 0);
        if (mode == 0) QD_EXPECT(S[0] == 2.0f / 15.0f && Z[0] == 7); /* the zero group: 1/(2/15) = 7.4999995 in fp32 */
        free(W), free(Q), free(S), free(codes), free(Z);
        qd_buf_free(bW), qd_buf_free(bQ), qd_buf_free(bc), qd_buf_free(bs), qd_buf_free(bz);
    }
}

/* GPTQ with H = I is RTN; with a correlated Hessian its output error beats RTN's */
static void test_gptq_sweep(void) {
    size_t N = 16, K = 256, T = 512, gs = 32, G = K / gs;
    float *W = rand_vec(N * K);
    qd_qcfg cfg = {.kind = QD_QZ_MINMAX, .bits = 3, .sym = 0};
    qd_buf_t bW = up(W, N * K), bU = up(NULL, K * K), bc = up(NULL, N * K), bs = up(NULL, G * N), bz = up(NULL, G * N);
    qd_buf_t bR = up(NULL, N * K), bRc = up(NULL, N * K);
    qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(bU, 0), .n = K, .scalar = 1});
    double loss;
    QD_EXPECT_EQ_INT(qd_be_gptq_sweep(be, &(struct qd_gptq_sweep_args){.cfg = cfg, .W = QD_REF(bW, 0), .U = QD_REF(bU, 0),
                                                                       .codes = QD_REF(bc, 0), .scales = QD_REF(bs, 0),
                                                                       .zeros = QD_REF(bz, 0), .N = N, .K = K,
                                                                       .group_size = gs, .block_size = 128,
                                                                       .loss_out = &loss}), QD_OK);
    qd_buf_t bW0 = up(W, N * K);
    qd_be_quantize(be, &(struct qd_quantize_args){.cfg = cfg, .W = QD_REF(bW0, 0), .Q = QD_REF(bR, 0), .codes = QD_REF(bRc, 0),
                                                  .N = N, .K = K, .ldw = K, .group_size = gs});
    float *g = down(bW), *r = down(bR);
    int32_t *gc = (int32_t *)down(bc), *rc = (int32_t *)down(bRc);
    int same = 1;
    double rtn_loss = 0;
    for (size_t i = 0; i < N * K; i++) {
        same &= g[i] == r[i] && gc[i] == rc[i];
        rtn_loss += ((double)W[i] - r[i]) * ((double)W[i] - r[i]) / 2;
    }
    QD_EXPECT(same);
    QD_EXPECT_NEAR(loss, rtn_loss, 1e-6 * rtn_loss);
    free(g), free(r), free(gc), free(rc);

    /* correlated inputs: X = Z M with a random mixing matrix */
    float *Z = rand_vec(T * K), *M = rand_vec(K * K), *X = malloc(T * K * 4);
    for (size_t t = 0; t < T; t++)
        for (size_t k = 0; k < K; k++) {
            double s = 0;
            for (size_t j = 0; j < 8; j++) s += Z[t * K + (k + j) % K] * M[j * K + k];
            X[t * K + k] = (float)s;
        }
    qd_buf_t bX = up(X, T * K);
    qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bW, 0), .src = W, .src_dtype = QD_DT_F32, .n = N * K});
    qd_be_hessian(be, &(struct qd_hessian_args){.H = QD_REF(bU, 0), .X = QD_REF(bX, 0), .T = T, .K = K, .ldx = K,
                                                .alpha = 2.0f / T, .beta = 0});
    float *Hh = down(bU);
    double mean = 0;
    for (size_t k = 0; k < K; k++) mean += Hh[k * K + k] / K;
    qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(bU, 0), .n = K, .scalar = (float)(0.01 * mean)});
    QD_EXPECT_EQ_INT(qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = QD_REF(bU, 0), .n = K}), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_gptq_sweep(be, &(struct qd_gptq_sweep_args){.cfg = cfg, .W = QD_REF(bW, 0), .U = QD_REF(bU, 0),
                                                                       .codes = QD_REF(bc, 0), .scales = QD_REF(bs, 0),
                                                                       .zeros = QD_REF(bz, 0), .N = N, .K = K,
                                                                       .group_size = gs, .block_size = 128,
                                                                       .loss_out = &loss}), QD_OK);
    g = down(bW), r = down(bR);
    /* output error ||(W - Q) X^T||^2 for both */
    double eg = 0, er = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t t = 0; t < T; t++) {
            double a = 0, b = 0;
            for (size_t k = 0; k < K; k++) {
                a += ((double)W[n * K + k] - g[n * K + k]) * X[t * K + k];
                b += ((double)W[n * K + k] - r[n * K + k]) * X[t * K + k];
            }
            eg += a * a, er += b * b;
        }
    fprintf(stderr, "gptq output error %.4g vs rtn %.4g (loss %.4g)\n", eg, er, loss);
    QD_EXPECT(eg < 0.8 * er);
    free(g), free(r), free(Z), free(M), free(X), free(Hh), free(W);
    qd_buf_free(bW), qd_buf_free(bU), qd_buf_free(bc), qd_buf_free(bs), qd_buf_free(bz);
    qd_buf_free(bR), qd_buf_free(bRc), qd_buf_free(bW0), qd_buf_free(bX);
}

static void test_awq_clip(void) {
    size_t N = 5, K = 64, T = 40, gs = 32, G = 2;
    float *W = rand_vec(N * K), *X = rand_vec(T * K);
    W[3] = 9; /* an outlier: clipping may cut it */
    qd_buf_t bW = up(W, N * K), bX = up(X, T * K), bb = up(NULL, N * G);
    qd_qcfg cfg = {.kind = QD_QZ_AWQ, .bits = 3};
    QD_EXPECT_EQ_INT(qd_be_awq_clip(be, &(struct qd_awq_clip_args){.cfg = cfg, .W = QD_REF(bW, 0), .X = QD_REF(bX, 0),
                                                                   .best_out = QD_REF(bb, 0), .N = N, .K = K, .T = T,
                                                                   .group_size = gs, .grid = 20, .max_shrink = 0.5f}), QD_OK);
    float *best = down(bb), *Wc = down(bW);
    int bad = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t g = 0; g < G; g++) {
            const float *w = W + n * K + g * gs;
            double om = 0, berr = INFINITY, bm = 0;
            for (size_t k = 0; k < gs; k++) om = fmax(om, fabs(w[k]));
            for (int i = 0; i < 10; i++) {
                float m = (float)om * (float)(1.0 - i / 20.0);
                float c[32], sc, ze;
                for (size_t k = 0; k < gs; k++) c[k] = fminf(fmaxf(w[k], -m), m);
                ref_params(3, 0, 1, c, gs, &sc, &ze);
                double err = 0;
                for (size_t t = 0; t < T; t++) {
                    double a = 0, b = 0;
                    for (size_t k = 0; k < gs; k++) {
                        float q = (fminf(fmaxf(nearbyintf(c[k] / sc) + ze, 0), 7) - ze) * sc;
                        a += (double)q * X[t * K + g * gs + k];
                        b += (double)w[k] * X[t * K + g * gs + k];
                    }
                    err += (a - b) * (a - b) / T;
                }
                if (err < berr * (1 - 1e-9)) berr = err, bm = m;
            }
            bad += fabs(best[n * G + g] - bm) > 1e-6 * bm;
            for (size_t k = 0; k < gs; k++) bad += Wc[n * K + g * gs + k] != fminf(fmaxf(w[k], -best[n * G + g]), best[n * G + g]);
        }
    QD_EXPECT_EQ_INT(bad, 0);
    QD_EXPECT(best[0] <= 9.0f && best[0] >= 4.5f); /* within the shrink range of the outlier row */
    free(best), free(Wc), free(W), free(X);
    qd_buf_free(bW), qd_buf_free(bX), qd_buf_free(bb);
}

int main(void) {
    const char *seed = getenv("QD_TEST_SEED");
    rng_state = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "seed %llu (QD_TEST_SEED replays it)\n", (unsigned long long)rng_state);
    if (qd_backend_cpu_create(1, &be) != QD_OK) return 1;
    QD_RUN(test_gemm);
    QD_RUN(test_hessian_chol);
    QD_RUN(test_permute_ewise);
    QD_RUN(test_norm_rope_attention);
    QD_RUN(test_attention_long);
    QD_RUN(test_quantize);
    QD_RUN(test_gptq_sweep);
    QD_RUN(test_awq_clip);
    qd_be_free(be);
    return QD_TEST_END();
}
