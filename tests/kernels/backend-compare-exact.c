/* SPDX-License-Identifier: MIT
 * backend-compare-exact.c - part of tests/kernels/test-backend-ops (backend-compare-util.h): the ops
 * with both backends in exact numerics (qd-backend.h), where every output must be bit-identical. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-compare-util.h"
#include "qd-backend.h"

/* ---- exact numerics (qd-backend.h QD_NUMERICS_EXACT): the same bits on both backends ----
 * Every op below is compared bit for bit (cmpi with 1.0). The one exception is the last case, where
 * each backend factors its own Hessian: chol_inv is LAPACK vs cuSOLVER in fp64 (not bit-exact), so the
 * codes of a sweep on each backend's own U need only the 99.9%. */
static void exact_mode(int on) {
    if (qd_be_set_numerics(BE[0], on ? QD_NUMERICS_EXACT : QD_NUMERICS_FAST) != QD_OK) exit(1);
    if (qd_be_set_numerics(BE[1], on ? QD_NUMERICS_EXACT : BE1_NUMERICS) != QD_OK) exit(1);
}

static void test_exact_linear(void) {
    exact_mode(1);
    size_t shapes[2][3] = {{67, 45, 129}, {300, 130, 1000}};
    for (int sh = 0; sh < 2; sh++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                size_t M = shapes[sh][0], N = shapes[sh][1], K = shapes[sh][2];
                float *A = rvec(M * K, 1), *B = rvec(K * N, 1), *C = rvec(M * N, 1);
                pbuf a = P(A, M * K), b = P(B, K * N), c = P(C, M * N);
                BOTH(qd_be_gemm(be, &(struct qd_gemm_args){.trans_a = ta, .trans_b = tb, .M = M, .N = N, .K = K, .alpha = 0.5f, .beta = sh ? 0.0f : 2.0f,
                                                           .A = R(a, i), .B = R(b, i), .C = R(c, i), .lda = ta ? M : K, .ldb = tb ? K : N, .ldc = N}));
                char name[64];
                snprintf(name, sizeof name, "exact gemm %zux%zux%zu ta=%d tb=%d", M, N, K, ta, tb);
                cmpi(name, c, 1);
                pfree(a), pfree(b), pfree(c), free(A), free(B), free(C);
            }
    size_t T = 700, Kh = 160;
    float *X = rvec(T * 200, 1);
    pbuf x = P(X, T * 200), h = P(NULL, Kh * Kh);
    BOTH(qd_be_hessian(be, &(struct qd_hessian_args){.H = R(h, i), .X = R(x, i), .T = T, .K = Kh, .ldx = 200, .alpha = 2.0f / T, .beta = 1.0f}));
    BOTH(qd_be_hessian(be, &(struct qd_hessian_args){.H = R(h, i), .X = QD_REF(x.b[i], 7), .T = T - 1, .K = Kh, .ldx = 200, .alpha = 2.0f / T, .beta = 0.5f}));
    cmpi("exact hessian (2 batches, beta 0.5)", h, 1);
    pfree(x), pfree(h), free(X);
    exact_mode(0);
}

static void test_exact_transformer(void) {
    exact_mode(1);
    size_t rows = 37, cols = 300, ld = 320, n = rows * ld;
    float *X = rvec(n, 2), *Y = rvec(n, 2), *V = rvec(ld, 1);
    X[3] = -120.0f, X[4] = 95.0f, X[5] = 0.0f; /* exp's clamps */
    pbuf x = P(X, n), y = P(Y, n), v = P(V, ld), o = P(NULL, n);
    BOTH(qd_be_ewise(be, &(struct qd_ewise_args){.kind = QD_EW_SWIGLU, .out = R(o, i), .x = R(x, i), .y = R(y, i), .rows = rows, .cols = cols, .ld = ld}));
    cmpi("exact swiglu", o, 1);
    BOTH(qd_be_rmsnorm(be, &(struct qd_rmsnorm_args){.out = R(o, i), .x = R(x, i), .weight = R(v, i), .rows = rows, .dim = cols, .ld = ld, .eps = 1e-5f}));
    cmpi("exact rmsnorm", o, 1);
    pbuf cs = P(V, cols);
    BOTH(qd_be_colstat(be, &(struct qd_colstat_args){.kind = QD_COLSTAT_ABS_SUM, .out = R(cs, i), .src = R(x, i), .rows = rows, .cols = cols, .ld = ld, .accumulate = 1}));
    cmpi("exact colstat abs_sum (accumulate)", cs, 1);
    BOTH(qd_be_colstat(be, &(struct qd_colstat_args){.kind = QD_COLSTAT_GROUP_NORM_SUM, .out = R(cs, i), .src = R(x, i), .rows = rows, .cols = cols, .ld = ld, .group_size = 30, .accumulate = 1}));
    cmpi("exact colstat group_norm_sum", cs, 1);
    for (int k = QD_RED_SQDIFF; k <= QD_RED_ABSMAX; k++) {
        double out[2];
        for (int i = 0; i < 2; i++)
            QD_EXPECT_EQ_INT(qd_be_reduce(BE[i], &(struct qd_reduce_args){.kind = (qd_red_kind)k, .a = R(x, i), .b = R(y, i), .n = n, .out = &out[i]}), QD_OK);
        fprintf(stderr, "  exact reduce %d                    cpu %.17g test %.17g\n", k, out[0], out[1]);
        QD_EXPECT(memcmp(&out[0], &out[1], sizeof out[0]) == 0);
    }
    pfree(x), pfree(y), pfree(v), pfree(o), pfree(cs), free(X), free(Y), free(V);
    size_t nseq = 2, T = 200, heads = 8, kvh = 2;
    for (int variant = 0; variant < 4; variant++) {
        size_t hd = variant == 1 ? 64 : variant == 3 ? 24 : 128, window = variant == 2 ? 50 : 0;
        size_t qn = nseq * T * heads * hd, kn = nseq * T * kvh * hd;
        float *Q = rvec(qn, 1), *Kk = rvec(kn, 1), *Vv = rvec(kn, 1);
        pbuf q = P(Q, qn), k = P(Kk, kn), vv = P(Vv, kn), out = P(NULL, qn);
        BOTH(qd_be_attention(be, &(struct qd_attention_args){.out = R(out, i), .q = R(q, i), .k = R(k, i), .v = R(vv, i), .nseq = nseq, .seq_len = T, .heads = heads,
                                                             .kv_heads = kvh, .head_dim = hd, .window = window, .scale = 1.0f / sqrtf((float)hd)}));
        char name[64];
        snprintf(name, sizeof name, "exact attention hd=%zu window=%zu", hd, window);
        cmpi(name, out, 1);
        pfree(q), pfree(k), pfree(vv), pfree(out), free(Q), free(Kk), free(Vv);
    }
    exact_mode(0);
}

static void test_exact_quant(void) {
    exact_mode(1);
    size_t N = 384, K = 512;
    float *U = make_U(K), *Wh = rvec(N * K, 0.02f);
    pbuf u = P(U, K * K);
    struct { int cfg; size_t gs, B; int stat; } cases[] = {
        {0, 128, 128, 0}, {1, 128, 128, 0}, {0, 32, 128, 0}, {0, 0, 128, 0}, {2, 128, 128, 0}, {0, 64, 96, 0}, {0, 128, 128, 1},
        {6, 0, 128, 1}, {7, 128, 128, 0}, {8, 128, 128, 0}, /* scales rounded to F16 / BF16 */
        {0, 128, 256, 0}, {1, 0, 384, 0}, {0, 128, 200, 0}, /* wider blocks (more columns per lane on CUDA), a partial last block */
    };
    int32_t *pr = malloc(K * 4);
    for (size_t k = 0; k < K; k++) pr[k] = (int32_t)((k * 37 + 11) % K);
    pbuf perm = P(pr, K);
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        size_t gs = cases[t].gs, G = gs ? K / gs : 1;
        pbuf w = P(Wh, N * K), codes = P(NULL, N * K), s = P(NULL, G * N), z = P(NULL, G * N);
        if (cases[t].stat)
            BOTH(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = CFGS[cases[t].cfg], .W = R(w, i), .scales = R(s, i), .zeros = R(z, i), .N = N, .K = K, .ldw = K, .group_size = gs}));
        double loss[2];
        for (int i = 0; i < 2; i++)
            QD_EXPECT_EQ_INT(qd_be_gptq_sweep(BE[i], &(struct qd_gptq_sweep_args){.cfg = CFGS[cases[t].cfg], .W = R(w, i), .U = R(u, i), .codes = R(codes, i), .scales = R(s, i),
                                                                                   .zeros = R(z, i), .perm = cases[t].stat ? R(perm, i) : QD_REF(NULL, 0), .N = N, .K = K,
                                                                                   .group_size = gs, .block_size = cases[t].B, .static_groups = cases[t].stat, .loss_out = &loss[i]}),
                             QD_OK);
        char name[96];
        snprintf(name, sizeof name, "exact gptq_sweep %s gs=%zu B=%zu%s", CFGN[cases[t].cfg], gs, cases[t].B, cases[t].stat ? " static" : "");
        cmpi(name, codes, 1);
        cmpi("  dequantized W", w, 1), cmpi("  scales", s, 1), cmpi("  zeros", z, 1);
        double rel = fabs(loss[0] - loss[1]) / loss[0]; /* summed in different orders: not compared bit for bit */
        fprintf(stderr, "    loss cpu %.10g test %.10g rel %.3g\n", loss[0], loss[1], rel);
        QD_EXPECT(rel < 1e-9);
        pfree(w), pfree(codes), pfree(s), pfree(z);
    }
    pfree(u), pfree(perm), free(U), free(Wh), free(pr);
    size_t Na = 200, Ka = 256, Ta = 96;
    float *Wa = rvec(Na * Ka, 0.02f), *Xa = rvec(Ta * Ka, 1);
    for (size_t k = 0; k < 40; k++) Wa[k * 5] *= 8;
    for (int c = 3; c <= 10; c = c == 4 ? 9 : c + 1) {
        pbuf w = P(Wa, Na * Ka), x = P(Xa, Ta * Ka), b = P(NULL, Na * 2);
        BOTH(qd_be_awq_clip(be, &(struct qd_awq_clip_args){.cfg = CFGS[c], .W = R(w, i), .X = R(x, i), .best_out = R(b, i), .N = Na, .K = Ka, .T = Ta,
                                                           .group_size = 128, .grid = 20, .max_shrink = 0.5f}));
        char name[96];
        snprintf(name, sizeof name, "exact awq_clip %s best", CFGN[c]);
        cmpi(name, b, 1), cmpi("  clipped W", w, 1);
        pfree(w), pfree(x), pfree(b);
    }
    free(Wa), free(Xa);
    /* the chain: X -> Hessian (bit-exact) -> damping -> each backend's own chol_inv -> sweep */
    size_t Kc = 512, Tc = 1024, Nc = 256;
    float *Xc = rvec(Tc * Kc, 1), *Wc = rvec(Nc * Kc, 0.02f);
    for (size_t t = 0; t < Tc; t++)
        for (size_t k = 0; k < Kc; k++) Xc[t * Kc + k] *= 1.0f + (float)(k % 7);
    pbuf xc = P(Xc, Tc * Kc), hc = P(NULL, Kc * Kc), wc = P(Wc, Nc * Kc), cc = P(NULL, Nc * Kc), sc = P(NULL, 4 * Nc), zc = P(NULL, 4 * Nc);
    BOTH(qd_be_hessian(be, &(struct qd_hessian_args){.H = R(hc, i), .X = R(xc, i), .T = Tc, .K = Kc, .ldx = Kc, .alpha = 2.0f / Tc}));
    cmpi("exact chain: hessian", hc, 1);
    BOTH(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = R(hc, i), .n = Kc, .scalar = 0.05f}));
    BOTH(qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = R(hc, i), .n = Kc}));
    cmpi("exact chain: chol_inv bit-equal share (info)", hc, 0);
    cmpf("exact chain: chol_inv (fp64 LAPACK/cuSOLVER)", hc, 1e-5);
    double lc[2];
    for (int i = 0; i < 2; i++)
        QD_EXPECT_EQ_INT(qd_be_gptq_sweep(BE[i], &(struct qd_gptq_sweep_args){.cfg = CFGS[0], .W = R(wc, i), .U = R(hc, i), .codes = R(cc, i), .scales = R(sc, i),
                                                                               .zeros = R(zc, i), .N = Nc, .K = Kc, .group_size = 128, .block_size = 128, .loss_out = &lc[i]}),
                         QD_OK);
    cmpi("exact chain: sweep codes on own U", cc, 0.999);
    pfree(xc), pfree(hc), pfree(wc), pfree(cc), pfree(sc), pfree(zc), free(Xc), free(Wc);
    exact_mode(0);
}

/* GPTQ with float targets (QD_QZ_FP8: one given scale per row, or per row and group of 128 columns as
 * fp8-block, or groups of 96 with a partial last one; QD_QZ_FP4: given static groups of 16, with a
 * permutation): the same codes, dequantized W and loss on every backend, bit for bit */
static void test_exact_float_targets(void) {
    exact_mode(1);
    size_t N = 200, K = 256;
    float *U = make_U(K), *Wh = rvec(N * K, 0.02f);
    int32_t *pr = malloc(K * 4);
    for (size_t k = 0; k < K; k++) pr[k] = (int32_t)((k * 37 + 11) % K);
    pbuf u = P(U, K * K), perm = P(pr, K);
    const struct { int fp4, act; size_t gs; } cases[] = {{0, 0, 0}, {0, 0, 128}, {0, 0, 96}, {1, 0, 16}, {1, 1, 16}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int fp4 = cases[ci].fp4, act = cases[ci].act;
        size_t gs = cases[ci].gs, G = gs ? (K + gs - 1) / gs : 1;
        float *sh = malloc(G * N * sizeof *sh);
        for (size_t g = 0; g < G; g++) /* amax / 448 or amax / 6 per row and group (any positive scale does) */
            for (size_t n = 0; n < N; n++) {
                float amax = 0;
                for (size_t k = gs ? g * gs : 0; k < (gs && (g + 1) * gs < K ? (g + 1) * gs : K); k++)
                    amax = fmaxf(amax, fabsf(Wh[n * K + k]));
                sh[g * N + n] = amax > 0 ? amax / (fp4 ? 6.0f : 448.0f) : 1.0f;
            }
        qd_qcfg cfg = {.kind = fp4 ? QD_QZ_FP4 : QD_QZ_FP8, .bits = fp4 ? 4 : 8, .sym = 1};
        pbuf w = P(Wh, N * K), codes = P(NULL, N * K), s = P(sh, G * N), z = P(NULL, G * N);
        double loss[2];
        for (int i = 0; i < 2; i++)
            QD_EXPECT_EQ_INT(qd_be_gptq_sweep(BE[i], &(struct qd_gptq_sweep_args){.cfg = cfg, .W = R(w, i), .U = R(u, i), .codes = R(codes, i),
                                                                                   .scales = R(s, i), .zeros = R(z, i), .perm = act ? R(perm, i) : QD_REF(NULL, 0),
                                                                                   .N = N, .K = K, .group_size = gs, .block_size = 64, .static_groups = 1,
                                                                                   .loss_out = &loss[i]}),
                             QD_OK);
        char name[96];
        snprintf(name, sizeof name, "exact gptq_sweep %s targets gs=%zu%s", fp4 ? "e2m1" : "e4m3", gs, act ? " perm" : "");
        cmpi(name, codes, 1);
        cmpi("  dequantized W", w, 1);
        double rel = fabs(loss[0] - loss[1]) / loss[0];
        fprintf(stderr, "    loss cpu %.10g test %.10g rel %.3g\n", loss[0], loss[1], rel);
        QD_EXPECT(rel < 1e-9);
        pfree(w), pfree(codes), pfree(s), pfree(z);
        free(sh);
    }
    pfree(u), pfree(perm), free(U), free(Wh), free(pr);
    exact_mode(0);
}

void qd_test_compare_exact(void) {
    QD_RUN(test_exact_linear);
    QD_RUN(test_exact_transformer);
    QD_RUN(test_exact_quant);
    QD_RUN(test_exact_float_targets);
}
