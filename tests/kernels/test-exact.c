/* SPDX-License-Identifier: MIT
 * test-exact.c - the CPU backend's exact numerics (qd-backend.h QD_NUMERICS_EXACT; runs in CI, no GPU).
 * Exact mode is a definition, not a tolerance: each op must equal, bit for bit, a plain loop written
 * here from the rules of kernels/qd-exact.h (fp64 sums of exact products in one fixed order, one
 * rounding to fp32, qd_exact_exp) - the same rules the CUDA backend's exact kernels follow, which
 * tests/kernels/backend-compare-exact.c checks on a GPU. It must also be closer to the true (fp64/long double)
 * value than fast mode, independent of the thread count, and qd_exact_exp accurate to ~1 ulp. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-backend-cpu.h"
#include "qd-backend.h"
#include "qd-exact.h"
#include "qd-test.h"

static uint64_t rs = 12345;
static float nrand(void) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        u[i] = (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
    }
    return (float)(sqrt(-2 * log(u[0] + 1e-300)) * cos(2 * M_PI * u[1]));
}
static float *rvec(size_t n, float s) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = s * nrand();
    return v;
}

static qd_backend_t mk(int threads, qd_numerics m) {
    qd_backend_t be;
    if (qd_backend_cpu_create(threads, &be) != QD_OK || qd_be_set_numerics(be, m) != QD_OK) exit(1);
    return be;
}
static qd_buf_t up(qd_backend_t be, const void *h, size_t n) {
    qd_buf_t b;
    if (qd_buf_alloc(be, n, &b) != QD_OK) exit(1);
    if (h && qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b, 0), .src = h, .src_dtype = QD_DT_F32, .n = n}))
        exit(1);
    return b;
}
static void *down(qd_backend_t be, qd_buf_t b, size_t n) {
    void *h = malloc(n * 4);
    if (qd_be_download(be, &(struct qd_download_args){.src = QD_REF(b, 0), .dst = h, .n = n}) != QD_OK) exit(1);
    return h;
}
static size_t ndiff(const void *a, const void *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += ((const uint32_t *)a)[i] != ((const uint32_t *)b)[i];
    return d;
}

static void test_exp(void) {
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        double x = -120.0 + 170.0 * i / 200000.0 + 1e-7 * nrand();
        double e = exp(x), r = fabs(qd_exact_exp(x) - e) / e;
        worst = fmax(worst, r);
    }
    fprintf(stderr, "  qd_exact_exp: max rel err %.3g over [-120, 50]\n", worst);
    QD_EXPECT(worst < 5e-16);
    QD_EXPECT(qd_exact_exp(0.0) == 1.0 && qd_exact_exp(-1000.0) == 0.0 && isinf(qd_exact_exp(1000.0)));
}

/* op(A) op(B) by the exact rules, and the true value in long double */
static void ref_gemm(int ta, int tb, size_t M, size_t N, size_t K, float al, const float *A, size_t lda, const float *B,
                     size_t ldb, float be, const float *C0, size_t ldc, float *out, long double *truth) {
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double acc = 0;
            long double t = 0;
            for (size_t k = 0; k < K; k++) {
                float a = ta ? A[k * lda + i] : A[i * lda + k], b = tb ? B[j * ldb + k] : B[k * ldb + j];
                acc += (double)a * (double)b;
                t += (long double)a * b;
            }
            out[i * ldc + j] = qd_exact_out(acc, al, be, C0[i * ldc + j]);
            truth[i * ldc + j] = (long double)al * t + (long double)be * C0[i * ldc + j];
        }
}
/* elements whose fp32 value is not the nearest float to the truth */
static size_t not_nearest(const float *x, const long double *t, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += x[i] != (float)t[i];
    return bad;
}

static void test_gemm(void) {
    size_t M = 67, N = 45, K = 129;
    qd_backend_t ex = mk(3, QD_NUMERICS_EXACT), fa = mk(3, QD_NUMERICS_FAST);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float *A = rvec(M * K, 1), *B = rvec(K * N, 1), *C = rvec(M * N, 1), *ref = malloc(M * N * 4);
            long double *tr = malloc(M * N * sizeof *tr);
            ref_gemm(ta, tb, M, N, K, 0.5f, A, ta ? M : K, B, tb ? K : N, 2.0f, C, N, ref, tr);
            float *res[2];
            qd_backend_t bs[2] = {ex, fa};
            for (int m = 0; m < 2; m++) {
                qd_buf_t a = up(bs[m], A, M * K), b = up(bs[m], B, K * N), c = up(bs[m], C, M * N);
                QD_EXPECT_EQ_INT(qd_be_gemm(bs[m], &(struct qd_gemm_args){.trans_a = ta, .trans_b = tb, .M = M, .N = N, .K = K, .alpha = 0.5f,
                                                                          .beta = 2.0f, .A = QD_REF(a, 0), .B = QD_REF(b, 0), .C = QD_REF(c, 0),
                                                                          .lda = ta ? M : K, .ldb = tb ? K : N, .ldc = N}), QD_OK);
                res[m] = down(bs[m], c, M * N);
                qd_buf_free(a), qd_buf_free(b), qd_buf_free(c);
            }
            size_t ne = not_nearest(res[0], tr, M * N), nf = not_nearest(res[1], tr, M * N);
            fprintf(stderr, "  gemm ta=%d tb=%d: exact = rule on all but %zu; not nearest: exact %zu, fast %zu of %zu\n", ta,
                    tb, ndiff(res[0], ref, M * N), ne, nf, M * N);
            QD_EXPECT(ndiff(res[0], ref, M * N) == 0);
            QD_EXPECT(ne <= nf && ne * 1000 <= M * N);
            free(A), free(B), free(C), free(ref), free(tr), free(res[0]), free(res[1]);
        }
    qd_be_free(ex), qd_be_free(fa);
}

static void test_hessian(void) {
    size_t T = 300, K = 70, ldx = 80;
    float *X = rvec(T * ldx, 1), *H0 = malloc(K * K * 4);
    qd_backend_t bs[3] = {mk(1, QD_NUMERICS_EXACT), mk(4, QD_NUMERICS_EXACT), mk(2, QD_NUMERICS_FAST)};
    float *res[3];
    for (int m = 0; m < 3; m++) {
        qd_buf_t x = up(bs[m], X, T * ldx), h = up(bs[m], NULL, K * K);
        QD_EXPECT_EQ_INT(qd_be_hessian(bs[m], &(struct qd_hessian_args){.H = QD_REF(h, 0), .X = QD_REF(x, 0), .T = T, .K = K, .ldx = ldx, .alpha = 2.0f / T, .beta = 0}), QD_OK);
        if (m == 0) {
            float *t = down(bs[m], h, K * K);
            memcpy(H0, t, K * K * 4);
            free(t);
        }
        QD_EXPECT_EQ_INT(qd_be_hessian(bs[m], &(struct qd_hessian_args){.H = QD_REF(h, 0), .X = QD_REF(x, 3), .T = T - 1, .K = K, .ldx = ldx, .alpha = 2.0f / T, .beta = 0.5f}), QD_OK);
        res[m] = down(bs[m], h, K * K);
        qd_buf_free(x), qd_buf_free(h);
    }
    /* the rule: upper triangle (float)(alpha * sum_t x_ti x_tj + beta * H), t in order, mirrored */
    size_t bad = 0, asym = 0;
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) {
            size_t a = i < j ? i : j, b = i < j ? j : i;
            double acc = 0;
            for (size_t t = 0; t < T - 1; t++) acc += (double)X[3 + t * ldx + a] * (double)X[3 + t * ldx + b];
            bad += res[0][i * K + j] != qd_exact_out(acc, 2.0f / T, 0.5f, H0[a * K + b]);
            asym += res[0][i * K + j] != res[0][j * K + i];
        }
    fprintf(stderr, "  hessian: %zu elements off the rule, %zu asymmetric, threads 1 vs 4: %zu differ\n", bad, asym,
            ndiff(res[0], res[1], K * K));
    QD_EXPECT(bad == 0 && asym == 0 && ndiff(res[0], res[1], K * K) == 0);
    for (int m = 0; m < 3; m++) free(res[m]), qd_be_free(bs[m]);
    free(X), free(H0);
}

static void test_attention_swiglu_reduce(void) {
    size_t nseq = 2, T = 70, heads = 4, kvh = 2, hd = 24, window = 0;
    size_t qn = nseq * T * heads * hd, kn = nseq * T * kvh * hd;
    float *Q = rvec(qn, 1), *Kk = rvec(kn, 1), *V = rvec(kn, 1);
    qd_backend_t bs[3] = {mk(1, QD_NUMERICS_EXACT), mk(3, QD_NUMERICS_EXACT), mk(2, QD_NUMERICS_FAST)};
    for (int w = 0; w < 2; w++) {
        window = w ? 9 : 0;
        float *res[3];
        for (int m = 0; m < 3; m++) {
            qd_buf_t q = up(bs[m], Q, qn), k = up(bs[m], Kk, kn), v = up(bs[m], V, kn), o = up(bs[m], NULL, qn);
            QD_EXPECT_EQ_INT(qd_be_attention(bs[m], &(struct qd_attention_args){.out = QD_REF(o, 0), .q = QD_REF(q, 0), .k = QD_REF(k, 0), .v = QD_REF(v, 0), .nseq = nseq,
                                                                                .seq_len = T, .heads = heads, .kv_heads = kvh, .head_dim = hd,
                                                                                .window = window, .scale = 0.3f}), QD_OK);
            res[m] = down(bs[m], o, qn);
            qd_buf_free(q), qd_buf_free(k), qd_buf_free(v), qd_buf_free(o);
        }
        /* the rule (qd-exact.h), and the truth in fp64 with libm's exp and no fp32 steps */
        size_t bad = 0;
        double err_ex = 0, err_fa = 0;
        float sc[128];
        double tsc[128];
        for (size_t s = 0; s < nseq; s++)
            for (size_t h = 0; h < heads; h++)
                for (size_t t = 0; t < T; t++) {
                    const float *qt = Q + (s * T + t) * heads * hd + h * hd;
                    size_t lo = window && t + 1 > window ? t + 1 - window : 0, kh = h / (heads / kvh);
                    float mx = -INFINITY;
                    double tmx = -INFINITY, ts = 0;
                    for (size_t c = lo; c <= t; c++) {
                        const float *kc = Kk + (s * T + c) * kvh * hd + kh * hd;
                        sc[c] = qd_exact_score(qt, kc, hd, 0.3f);
                        mx = fmaxf(mx, sc[c]);
                        long double dot = 0;
                        for (size_t d = 0; d < hd; d++) dot += (long double)qt[d] * kc[d];
                        tsc[c] = (double)(dot * (long double)0.3f);
                        tmx = fmax(tmx, tsc[c]);
                    }
                    double sum = 0, acc[64] = {0}, tacc[64] = {0};
                    for (size_t c = lo; c <= t; c++) {
                        double p = qd_exact_softmax_num(sc[c], mx);
                        double tp = exp(tsc[c] - tmx);
                        sum += p, ts += tp;
                        for (size_t d = 0; d < hd; d++) {
                            float vv = V[(s * T + c) * kvh * hd + kh * hd + d];
                            acc[d] += p * (double)vv;
                            tacc[d] += tp * vv;
                        }
                    }
                    for (size_t d = 0; d < hd; d++) {
                        size_t i = (s * T + t) * heads * hd + h * hd + d;
                        bad += res[0][i] != (float)(acc[d] / sum);
                        double tv = tacc[d] / ts;
                        err_ex = fmax(err_ex, fabs(res[0][i] - tv)), err_fa = fmax(err_fa, fabs(res[2][i] - tv));
                    }
                }
        fprintf(stderr, "  attention window=%zu: %zu off the rule, threads 1 vs 3: %zu differ; max err vs fp64: exact %.3g fast %.3g\n",
                window, bad, ndiff(res[0], res[1], qn), err_ex, err_fa);
        QD_EXPECT(bad == 0 && ndiff(res[0], res[1], qn) == 0 && err_ex <= err_fa && err_ex < 1e-6);
        for (int m = 0; m < 3; m++) free(res[m]);
    }
    /* SwiGLU and the reductions */
    size_t n = 5000;
    float *X = rvec(n, 4), *Y = rvec(n, 1);
    X[7] = -200.0f, X[8] = 100.0f, X[9] = 0.0f;
    qd_buf_t x = up(bs[0], X, n), y = up(bs[0], Y, n), o = up(bs[0], NULL, n);
    QD_EXPECT_EQ_INT(qd_be_ewise(bs[0], &(struct qd_ewise_args){.kind = QD_EW_SWIGLU, .out = QD_REF(o, 0), .x = QD_REF(x, 0), .y = QD_REF(y, 0), .rows = 1, .cols = n, .ld = n}), QD_OK);
    float *r = down(bs[0], o, n);
    size_t bad = 0, far = 0;
    for (size_t i = 0; i < n; i++) {
        bad += r[i] != qd_exact_swiglu(X[i], Y[i]);
        far += r[i] != (float)((double)X[i] / (1.0 + exp(-(double)X[i])) * Y[i]);
    }
    fprintf(stderr, "  swiglu: %zu off the rule, %zu off fp64 with libm exp (of %zu)\n", bad, far, n);
    QD_EXPECT(bad == 0 && far <= 2);
    double sq, want = 0;
    for (size_t c0 = 0; c0 < n; c0 += QD_EXACT_CHUNK) {
        double part = 0;
        for (size_t i = c0; i < n && i < c0 + QD_EXACT_CHUNK; i++) {
            double d = (double)X[i] - (double)Y[i];
            part += d * d;
        }
        want += part;
    }
    QD_EXPECT_EQ_INT(qd_be_reduce(bs[0], &(struct qd_reduce_args){.kind = QD_RED_SQDIFF, .a = QD_REF(x, 0), .b = QD_REF(y, 0), .n = n, .out = &sq}), QD_OK);
    QD_EXPECT(sq == want);
    qd_buf_free(x), qd_buf_free(y), qd_buf_free(o), free(r), free(X), free(Y);
    for (int m = 0; m < 3; m++) qd_be_free(bs[m]);
    free(Q), free(Kk), free(V);
}

/* the sweep (exact lazy update) and the AWQ clip search: the same bits for any thread count, and
 * results of the same quality as fast mode */
static void test_sweep_awq(void) {
    size_t N = 96, K = 256, T = 2 * K;
    float *X = rvec(T * K, 1), *W = rvec(N * K, 0.02f);
    qd_backend_t bs[3] = {mk(1, QD_NUMERICS_EXACT), mk(3, QD_NUMERICS_EXACT), mk(2, QD_NUMERICS_FAST)};
    qd_qcfg cfg = {.kind = QD_QZ_MINMAX, .bits = 4, .sym = 1};
    float *Wr[3], *Cr[3];
    double loss[3];
    for (int m = 0; m < 3; m++) {
        qd_backend_t be = bs[m];
        qd_buf_t x = up(be, X, T * K), h = up(be, NULL, K * K), w = up(be, W, N * K), codes = up(be, NULL, N * K),
                 s = up(be, NULL, 2 * N), z = up(be, NULL, 2 * N);
        QD_EXPECT_EQ_INT(qd_be_hessian(be, &(struct qd_hessian_args){.H = QD_REF(h, 0), .X = QD_REF(x, 0), .T = T, .K = K, .ldx = K, .alpha = 2.0f / T}), QD_OK);
        QD_EXPECT_EQ_INT(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(h, 0), .n = K, .scalar = 0.02f}), QD_OK);
        QD_EXPECT_EQ_INT(qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = QD_REF(h, 0), .n = K}), QD_OK);
        QD_EXPECT_EQ_INT(qd_be_gptq_sweep(be, &(struct qd_gptq_sweep_args){.cfg = cfg, .W = QD_REF(w, 0), .U = QD_REF(h, 0), .codes = QD_REF(codes, 0),
                                                                           .scales = QD_REF(s, 0), .zeros = QD_REF(z, 0), .N = N, .K = K,
                                                                           .group_size = 128, .block_size = 64, .loss_out = &loss[m]}), QD_OK);
        Wr[m] = down(be, w, N * K), Cr[m] = down(be, codes, N * K);
        qd_buf_free(x), qd_buf_free(h), qd_buf_free(w), qd_buf_free(codes), qd_buf_free(s), qd_buf_free(z);
    }
    fprintf(stderr, "  gptq_sweep: threads 1 vs 3: %zu codes, %zu weights differ; loss exact %.6g fast %.6g\n",
            ndiff(Cr[0], Cr[1], N * K), ndiff(Wr[0], Wr[1], N * K), loss[0], loss[2]);
    QD_EXPECT(ndiff(Cr[0], Cr[1], N * K) == 0 && ndiff(Wr[0], Wr[1], N * K) == 0);
    QD_EXPECT(fabs(loss[0] - loss[2]) <= 0.05 * loss[2]);
    for (int m = 0; m < 3; m++) free(Wr[m]), free(Cr[m]);
    float *best[3];
    qd_qcfg acfg = {.kind = QD_QZ_AWQ, .bits = 4, .sym = 0};
    for (int m = 0; m < 3; m++) {
        qd_buf_t w = up(bs[m], W, N * K), x = up(bs[m], X, 64 * K), b = up(bs[m], NULL, N * 2);
        QD_EXPECT_EQ_INT(qd_be_awq_clip(bs[m], &(struct qd_awq_clip_args){.cfg = acfg, .W = QD_REF(w, 0), .X = QD_REF(x, 0), .best_out = QD_REF(b, 0),
                                                                           .N = N, .K = K, .T = 64, .group_size = 128, .grid = 20, .max_shrink = 0.5f}), QD_OK);
        best[m] = down(bs[m], b, N * 2);
        qd_buf_free(w), qd_buf_free(x), qd_buf_free(b);
    }
    size_t same = N * 2 - ndiff(best[0], best[2], N * 2);
    fprintf(stderr, "  awq_clip: threads 1 vs 3: %zu differ; exact vs fast (OpenBLAS dgemm): %zu of %zu equal\n",
            ndiff(best[0], best[1], N * 2), same, N * 2);
    QD_EXPECT(ndiff(best[0], best[1], N * 2) == 0 && same * 100 >= N * 2 * 98);
    for (int m = 0; m < 3; m++) free(best[m]), qd_be_free(bs[m]);
    free(X), free(W);
}

int main(void) {
    QD_RUN(test_exp);
    QD_RUN(test_gemm);
    QD_RUN(test_hessian);
    QD_RUN(test_attention_swiglu_reduce);
    QD_RUN(test_sweep_awq);
    return QD_TEST_END();
}
