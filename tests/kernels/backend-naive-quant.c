/* SPDX-License-Identifier: MIT
 * backend-naive-quant.c - part of tests/kernels/test-backend-ops (backend-naive.h): the CPU backend's
 * quantize, gptq_sweep and awq_clip ops against a reference quantizer written here. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend-naive.h"
#include "backend-ops-util.h"
#include "qd-log.h"

/* x > 0 rounded to nearest even at `sig` significant bits, with the dtype's subnormal step `tiny`
 * (F16: 11 bits, 2^-24; BF16: 8 bits, 2^-133); 0 after rounding becomes `tiny` (F16) or FLT_MIN (BF16),
 * as qd-backend.h's scale_dtype rule says: written from the rule, not from qd's conversion code */
static float ref_stored(qd_dtype dt, float x) {
    if (dt != QD_DT_F16 && dt != QD_DT_BF16) return x;
    int sig = dt == QD_DT_F16 ? 11 : 8, e;
    double tiny = dt == QD_DT_F16 ? ldexp(1, -24) : ldexp(1, -133), r;
    frexp(x, &e); /* x = m 2^e, m in [0.5, 1) */
    double step = ldexp(1, e - sig);
    if (step < tiny) step = tiny;
    r = nearbyint((double)x / step) * step;
    if (r == 0) return dt == QD_DT_F16 ? (float)tiny : 0x1p-126f;
    return (float)r;
}

/* the reference quantizer, written from docs/reference/algorithms.md in double where it does not matter;
 * the scale rounded to dt (above) before the zero, which stays within 0..maxq (qd-backend.h) */
static void ref_params(int bits, int sym, int awq, qd_dtype dt, const float *x, size_t n, float *scale, float *zero) {
    float maxq = (float)((1 << bits) - 1), mn = x[0], mx = x[0];
    for (size_t i = 1; i < n; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    if (awq) {
        *scale = ref_stored(dt, fmaxf(mx - mn, 1e-5f) / maxq);
        *zero = fminf(fmaxf(-nearbyintf(mn / *scale), 0), maxq);
        return;
    }
    mn = fminf(mn, 0), mx = fmaxf(mx, 0);
    if (sym) mx = fmaxf(-mn, mx), mn = -mx;
    if (mn == 0 && mx == 0) mn = -1, mx = 1;
    *scale = ref_stored(dt, (mx - mn) / maxq);
    *zero = sym ? (maxq + 1) / 2 : fminf(nearbyintf(-mn / *scale), maxq);
}

static void test_quantize(void) {
    size_t N = 6, K = 64;
    /* modes 3-7: scales stored as F16 / BF16 (w8a8's per-channel 8 bits, 4-bit groups, AWQ's, 8-bit asym) */
    for (int mode = 0; mode < 8; mode++) {
        int sym = mode == 1 || mode == 3, awq = mode == 2 || mode == 5, bits = mode == 1 ? 3 : mode == 3 || mode >= 6 ? 8 : 4;
        qd_dtype dt = mode == 3 || mode == 5 || mode == 7 ? QD_DT_F16 : mode == 4 || mode == 6 ? QD_DT_BF16 : QD_DT_F32;
        size_t gs = mode == 0 || mode == 4 ? 16 : mode == 3 ? K : 32, G = K / gs;
        float *W = rand_vec(N * K);
        for (size_t k = 0; k < gs; k++) W[k] = 0; /* an all-zero group: range [-1, 1] */
        if (mode >= 3 && mode <= 5) /* a row whose scales underflow F16 (BF16: fall among its subnormals) */
            for (size_t k = 0; k < K; k++) W[K + k] *= mode == 4 ? 0x1p-130f : 1e-9f;
        /* row 2's groups <= 0 with a scale the dtype rounds down so far that round(-min / scale) = 256 =
         * maxq + 1, which no format stores. BF16: min -255.99 x 2^-10, scale 1.0039 x 2^-10 stored as 2^-10.
         * F16 (subnormal): min -25625 x 2^-24, scale 100.49 x 2^-24 stored as 100 x 2^-24 */
        float m6 = mode == 6 ? -255.99f * 0x1p-10f : -25625 * 0x1p-24f, s6 = mode == 6 ? 0x1p-10f : 100 * 0x1p-24f;
        if (mode >= 6)
            for (size_t k = 0; k < K; k++) W[2 * K + k] = k % gs ? -fabsf(W[2 * K + k]) * 1e-6f : m6;
        qd_buf_t bW = up(W, N * K), bQ = up(NULL, N * K), bc = up(NULL, N * K), bs = up(NULL, G * N), bz = up(NULL, G * N);
        qd_qcfg cfg = {.kind = awq ? QD_QZ_AWQ : QD_QZ_MINMAX, .bits = bits, .sym = sym, .scale_dtype = dt};
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
                ref_params(bits, sym, awq, dt, W + n * K + g * gs, gs, &sc, &ze);
                bad += S[g * N + n] != sc || Z[g * N + n] != (int32_t)ze || Z[g * N + n] < 0 || Z[g * N + n] > (int32_t)maxq;
                for (size_t k = g * gs; k < (g + 1) * gs; k++) {
                    float q = fminf(fmaxf(nearbyintf(W[n * K + k] / sc) + ze, 0), maxq);
                    bad += codes[n * K + k] != (int32_t)q || Q[n * K + k] != sc * (q - ze);
                }
            }
        QD_EXPECT_EQ_INT(bad, 0);
        if (mode == 0) QD_EXPECT(S[0] == 2.0f / 15.0f && Z[0] == 7); /* the zero group: 1/(2/15) = 7.4999995 in fp32 */
        if (mode == 4) QD_EXPECT(S[0] == 0x1.12p-3f && Z[0] == 7); /* 2/15 in BF16; 1 / that = 7.447 */
        if (mode == 3) QD_EXPECT(S[1] == 0x1p-24f); /* row 1's scale underflowed F16: its smallest subnormal */
        if (mode >= 6) /* row 2: zero bounded to 255; the min gets code 0, dequant -255 x the stored scale */
            for (size_t g = 0; g < G; g++) {
                QD_EXPECT(S[g * N + 2] == s6 && Z[g * N + 2] == 255);
                QD_EXPECT(codes[2 * K + g * gs] == 0 && Q[2 * K + g * gs] == -255 * s6);
            }
        if (dt != QD_DT_F32) /* every scale is one the checkpoint can hold exactly */
            for (size_t i = 0; i < G * N; i++) {
                uint16_t h = dt == QD_DT_F16 ? qd_f32_to_f16(S[i]) : qd_f32_to_bf16(S[i]);
                bad += (dt == QD_DT_F16 ? qd_f16_to_f32(h) : qd_bf16_to_f32(h)) != S[i];
            }
        QD_EXPECT_EQ_INT(bad, 0);
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

static void awq_clip_case(qd_dtype dt) {
    size_t N = 5, K = 64, T = 40, gs = 32, G = 2;
    float *W = rand_vec(N * K), *X = rand_vec(T * K);
    W[3] = 9; /* an outlier: clipping may cut it */
    qd_buf_t bW = up(W, N * K), bX = up(X, T * K), bb = up(NULL, N * G);
    qd_qcfg cfg = {.kind = QD_QZ_AWQ, .bits = 3, .scale_dtype = dt};
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
                ref_params(3, 0, 1, dt, c, gs, &sc, &ze);
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

/* the clip search with fp32 scales, and with each candidate's scale as F16 stores it */
static void test_awq_clip(void) {
    awq_clip_case(QD_DT_F32);
    awq_clip_case(QD_DT_F16);
}

/* the sweep's own group parameters (dynamic groups) follow the scale dtype: with H = I it is RTN with F16 scales */
static void test_gptq_sweep_stored_scales(void) {
    size_t N = 8, K = 128, gs = 32, G = K / gs;
    float *W = rand_vec(N * K);
    for (size_t k = 0; k < K; k++) W[k] *= 1e-3f; /* small scales: F16 keeps fewer bits of them */
    qd_qcfg cfg = {.kind = QD_QZ_MINMAX, .bits = 4, .sym = 0, .scale_dtype = QD_DT_F16};
    qd_buf_t bW = up(W, N * K), bU = up(NULL, K * K), bc = up(NULL, N * K), bs = up(NULL, G * N), bz = up(NULL, G * N);
    qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(bU, 0), .n = K, .scalar = 1});
    double loss;
    QD_EXPECT_EQ_INT(qd_be_gptq_sweep(be, &(struct qd_gptq_sweep_args){.cfg = cfg, .W = QD_REF(bW, 0), .U = QD_REF(bU, 0),
                                                                       .codes = QD_REF(bc, 0), .scales = QD_REF(bs, 0),
                                                                       .zeros = QD_REF(bz, 0), .N = N, .K = K,
                                                                       .group_size = gs, .block_size = 64,
                                                                       .loss_out = &loss}), QD_OK);
    float *Wg = down(bW), *S = down(bs);
    int32_t *codes = (int32_t *)down(bc), *Z = (int32_t *)down(bz);
    int bad = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t g = 0; g < G; g++) {
            float sc, ze;
            ref_params(4, 0, 0, QD_DT_F16, W + n * K + g * gs, gs, &sc, &ze);
            bad += S[g * N + n] != sc || Z[g * N + n] != (int32_t)ze;
            for (size_t k = g * gs; k < (g + 1) * gs; k++) { /* stored scale x (code - zero) is the sweep's weight */
                float q = fminf(fmaxf(nearbyintf(W[n * K + k] / sc) + ze, 0), 15);
                bad += codes[n * K + k] != (int32_t)q || Wg[n * K + k] != sc * ((float)codes[n * K + k] - ze);
            }
        }
    QD_EXPECT_EQ_INT(bad, 0);
    free(W), free(Wg), free(S), free(codes), free(Z);
    qd_buf_free(bW), qd_buf_free(bU), qd_buf_free(bc), qd_buf_free(bs), qd_buf_free(bz);
}

void qd_test_naive_quant(void) {
    QD_RUN(test_quantize);
    QD_RUN(test_gptq_sweep);
    QD_RUN(test_awq_clip);
    QD_RUN(test_gptq_sweep_stored_scales);
}
