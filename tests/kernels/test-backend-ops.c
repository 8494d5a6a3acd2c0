/* SPDX-License-Identifier: MIT
 * test-backend-ops.c - the backend ops test. First every op of the CPU backend against a naive
 * double-precision loop written here (the quantization ops: backend-naive-quant.c); then every backend
 * the registry offers against the CPU backend (backend-compare*.c: a GPU as itself, the CPU in exact
 * numerics). Random data drawn fresh each run (the seed is printed; QD_TEST_SEED=N replays a run).
 * The files share their counters and random stream through backend-ops-util.h. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "backend-naive.h"
#include "backend-ops-util.h"
#include "qd-backend-cpu.h"
#include "qd-backend.h"
#include "qd-log.h"

qd_backend_t be;

float *rand_vec(size_t n) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = nrand();
    return v;
}

qd_buf_t up(const void *src, size_t n) {
    qd_buf_t b = NULL;
    if (qd_buf_alloc(be, n, &b) != QD_OK) exit(1);
    if (src && qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b, 0), .src = src, .src_dtype = QD_DT_F32, .n = n}) != QD_OK)
        exit(1);
    return b;
}
float *down(qd_buf_t b) {
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

/* U from the definition, independently of LAPACK: A^-1 by Gauss-Jordan with partial pivoting, then
 * its upper Cholesky factor (A^-1 = U^T U) by the textbook recurrence, all in fp64 */
static void ref_chol_inv(const float *A, size_t n, double *U) {
    double *M = malloc(n * 2 * n * sizeof *M), *I = malloc(n * n * sizeof *I);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < 2 * n; j++) M[i * 2 * n + j] = j < n ? A[i * n + j] : (j - n == i);
    for (size_t c = 0; c < n; c++) {
        size_t p = c;
        for (size_t r = c + 1; r < n; r++)
            if (fabs(M[r * 2 * n + c]) > fabs(M[p * 2 * n + c])) p = r;
        for (size_t j = 0; j < 2 * n; j++) {
            double t = M[c * 2 * n + j];
            M[c * 2 * n + j] = M[p * 2 * n + j], M[p * 2 * n + j] = t;
        }
        double piv = M[c * 2 * n + c];
        for (size_t j = 0; j < 2 * n; j++) M[c * 2 * n + j] /= piv;
        for (size_t r = 0; r < n; r++) {
            double f = M[r * 2 * n + c];
            if (r != c && f != 0)
                for (size_t j = 0; j < 2 * n; j++) M[r * 2 * n + j] -= f * M[c * 2 * n + j];
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) I[i * n + j] = 0.5 * (M[i * 2 * n + n + j] + M[j * 2 * n + n + i]);
    for (size_t i = 0; i < n; i++) /* U^T U = I row by row: U[i][j] for j >= i */
        for (size_t j = 0; j < n; j++) {
            if (j < i) {
                U[i * n + j] = 0;
                continue;
            }
            double s = I[i * n + j];
            for (size_t k = 0; k < i; k++) s -= U[k * n + i] * U[k * n + j];
            U[i * n + j] = j == i ? sqrt(s) : s / U[i * n + i];
        }
    free(M), free(I);
}

/* chol_inv against the reference on SPD matrices from well to ill conditioned (1e5: damped Hessians of
 * real activations), in both numerics (fast: potrf + trtri of the reversed matrix; exact: potrf,
 * potri, potrf): U to 1e-5 of max |U|, the fp32 rounding plus cond * fp64 epsilon */
static void test_chol_inv_reference(void) {
    const double conds[3] = {10, 1e3, 1e5};
    const size_t ns[3] = {1, 33, 96};
    for (int m = 0; m < 2; m++) {
        QD_EXPECT_EQ_INT(qd_be_set_numerics(be, m ? QD_NUMERICS_EXACT : QD_NUMERICS_FAST), QD_OK);
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 3; k++) {
                size_t n = ns[k];
                float *A = spd_matrix(n, conds[c]);
                double *ref = malloc(n * n * sizeof *ref);
                ref_chol_inv(A, n, ref);
                qd_buf_t bA = up(A, n * n);
                QD_EXPECT_EQ_INT(qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = QD_REF(bA, 0), .n = n}), QD_OK);
                float *U = down(bA);
                double err = max_rel(U, ref, n * n);
                if (err >= 1e-5)
                    fprintf(stderr, "  chol_inv %s n=%zu cond %.0e: rel err %.3g\n", m ? "exact" : "fast", n, conds[c], err);
                QD_EXPECT(err < 1e-5);
                free(A), free(ref), free(U), qd_buf_free(bA);
            }
    }
    QD_EXPECT_EQ_INT(qd_be_set_numerics(be, QD_NUMERICS_FAST), QD_OK);
}

/* upper_only computes the upper triangle (the rest may be anything); symmetrize completes it with bit
 * copies of the upper triangle */
static void test_hessian_upper_symmetrize(void) {
    size_t T = 40, K = 70;
    float *X = rand_vec(T * K), *G = rand_vec(K * K);
    double *H = malloc(K * K * sizeof *H);
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) {
            double s = 0;
            for (size_t t = 0; t < T; t++) s += (double)X[t * K + i] * X[t * K + j];
            H[i * K + j] = 0.5 * s;
        }
    qd_buf_t bX = up(X, T * K), bH = up(NULL, K * K), bG = up(G, K * K);
    QD_EXPECT_EQ_INT(qd_be_hessian(be, &(struct qd_hessian_args){.H = QD_REF(bH, 0), .X = QD_REF(bX, 0), .T = T, .K = K,
                                                                 .ldx = K, .alpha = 0.5f, .beta = 1, .upper_only = 1}), QD_OK);
    float *got = down(bH);
    double err = 0;
    for (size_t i = 0; i < K; i++)
        for (size_t j = i; j < K; j++) err = fmax(err, fabs(got[i * K + j] - H[i * K + j]));
    QD_EXPECT(err < 1e-4);
    free(got);
    QD_EXPECT_EQ_INT(qd_be_symmetrize(be, &(struct qd_symmetrize_args){.A = QD_REF(bH, 0), .n = K}), QD_OK);
    got = down(bH);
    QD_EXPECT(max_rel(got, H, K * K) < 1e-5);
    free(got);
    QD_EXPECT_EQ_INT(qd_be_symmetrize(be, &(struct qd_symmetrize_args){.A = QD_REF(bG, 0), .n = K}), QD_OK);
    got = down(bG);
    size_t bad = 0;
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) bad += got[i * K + j] != G[(j < i ? j : i) * K + (j < i ? i : j)];
    QD_EXPECT(bad == 0);
    free(got), free(X), free(G), free(H);
    qd_buf_free(bX), qd_buf_free(bH), qd_buf_free(bG);
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
    /* rows: gather rows 4, 1, 3 of A, then add them back weighted into B */
    int32_t ri[3] = {4, 1, 3};
    qd_buf_t bI = up(NULL, 3), bG = up(NULL, 3 * C), bW = up(v, 3);
    qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bI, 0), .src = ri, .src_dtype = QD_DT_I32, .n = 3});
    QD_EXPECT_EQ_INT(qd_be_rows(be, &(struct qd_rows_args){.kind = QD_ROWS_GATHER, .out = QD_REF(bG, 0), .x = QD_REF(bA, 0),
                                                          .idx = QD_REF(bI, 0), .n = 3, .rows = R, .cols = C}), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_rows(be, &(struct qd_rows_args){.kind = QD_ROWS_SCATTER_ADD, .out = QD_REF(bB, 0), .x = QD_REF(bG, 0),
                                                          .idx = QD_REF(bI, 0), .w = QD_REF(bW, 0), .n = 3, .rows = R, .cols = C}), QD_OK);
    o = down(bB);
    okp = 1;
    for (size_t r = 0; r < R; r++)
        for (size_t j = 0; j < C; j++) {
            float want = Bm[r * C + j];
            for (size_t k = 0; k < 3; k++)
                if ((size_t)ri[k] == r) want += v[k] * A[r * C + j];
            okp &= o[r * C + j] == want;
        }
    QD_EXPECT(okp);
    int32_t bad = (int32_t)R;
    qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bI, 0), .src = &bad, .src_dtype = QD_DT_I32, .n = 1});
    QD_EXPECT(qd_be_rows(be, &(struct qd_rows_args){.kind = QD_ROWS_GATHER, .out = QD_REF(bG, 0), .x = QD_REF(bA, 0),
                                                   .idx = QD_REF(bI, 0), .n = 1, .rows = R, .cols = C}) != QD_OK);
    free(o);
    qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bB, 0), .src = Bm, .src_dtype = QD_DT_F32, .n = R * C});
    qd_buf_free(bI), qd_buf_free(bG), qd_buf_free(bW);
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
int main(void) {
    const char *seed = getenv("QD_TEST_SEED");
    uint64_t s = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL);
    qd_test_seed(s);
    fprintf(stderr, "seed %llu (QD_TEST_SEED replays it)\n", (unsigned long long)s);
    if (qd_backend_cpu_create(1, &be) != QD_OK) return 1;
    QD_RUN(test_gemm);
    QD_RUN(test_hessian_chol);
    QD_RUN(test_chol_inv_reference);
    QD_RUN(test_hessian_upper_symmetrize);
    QD_RUN(test_permute_ewise);
    QD_RUN(test_norm_rope_attention);
    QD_RUN(test_attention_long);
    qd_test_naive_quant();
    qd_test_naive_fp8();
    qd_be_free(be);
    int naive = QD_TEST_END();
    int compared = qd_test_backend_compare();
    return naive || compared;
}
