/* SPDX-License-Identifier: MIT
 * backend-compare.c - part of tests/kernels/test-backend-ops (backend-ops-util.h): every backend the
 * registry offers (qd_backend_devices) against the CPU backend in fast numerics, the reference, on the
 * same random data (ggml's test-backend-ops is the model). A CUDA device runs as itself; the CPU entry
 * runs the CPU backend in exact numerics (kernels/cpu/exact.c, an independent fp64 path), so a build
 * without a GPU still compares two implementations of every op. Per-op tolerances: bit-exact for data
 * movement, ~1e-6 relative for elementwise and transformer ops, 1e-5 for fp32 GEMMs, integer codes
 * equal on >= 99.9% of weights for the GPTQ sweep (its lazy update is a GEMM whose rounding differs
 * between BLAS orders) and on all of them for plain quantization; then the same ops with both sides in
 * exact numerics (backend-compare-exact.c), where every output must be bit-identical. CUDA only
 * (backend-compare-cuda.c): the optional u8_codes op must exist, and the bf16 tensor-core attention is
 * checked. A CUDA device is skipped when QD_CUDA_MATH is set to other than fp32 (the tolerances are
 * for fp32). This file: the driver and the fast-numerics ops; the helpers: backend-compare-util.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-compare-util.h"
#include "qd-backend-cpu.h"
#include "qd-backend.h"
#include "qd-backends.h"
#include "qd-dtype.h"
#include "qd-log.h"
#include "qd-param.h"

static void test_movement(void) {
    size_t n = 1000;
    float *x = rvec(n, 3);
    uint16_t *h16 = malloc(n * 2), *f16 = malloc(n * 2);
    double *f64 = malloc(n * 8);
    for (size_t i = 0; i < n; i++) h16[i] = qd_f32_to_bf16(x[i]), f16[i] = qd_f32_to_f16(x[i]), f64[i] = x[i] * 1.000001;
    pbuf a = P(NULL, n), b = P(NULL, n), c = P(NULL, n);
    BOTH(qd_be_upload(be, &(struct qd_upload_args){.dst = R(a, i), .src = h16, .src_dtype = QD_DT_BF16, .n = n}));
    BOTH(qd_be_upload(be, &(struct qd_upload_args){.dst = R(b, i), .src = f16, .src_dtype = QD_DT_F16, .n = n}));
    BOTH(qd_be_upload(be, &(struct qd_upload_args){.dst = R(c, i), .src = f64, .src_dtype = QD_DT_F64, .n = n}));
    cmpi("upload bf16", a, 1), cmpi("upload f16", b, 1), cmpi("upload f64", c, 1);
    BOTH(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(a.b[i], 3), .src = QD_REF(b.b[i], 1), .rows = 9, .cols = 50, .ldd = 100, .lds = 110}));
    cmpi("copy 2-D", a, 1);
    BOTH(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(a.b[i], 400), .src = QD_REF(c.b[i], 5), .rows = 1, .cols = 555, .ldd = 555, .lds = 555}));
    cmpi("copy flat", a, 1);
    BOTH(qd_be_fill(be, &(struct qd_fill_args){.dst = QD_REF(c.b[i], 17), .n = 500, .value = -2.5f}));
    cmpi("fill", c, 1);
    size_t rr = 20, cc = 50;
    int32_t pr[50];
    for (size_t k = 0; k < cc; k++) pr[k] = (int32_t)((k * 7 + 3) % cc);
    pbuf perm = P(pr, cc), src = P(x, rr * cc), dst = P(NULL, rr * cc);
    BOTH(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_COLS, .dst = R(dst, i), .src = R(src, i), .perm = R(perm, i), .rows = rr, .cols = cc}));
    cmpi("permute cols", dst, 1);
    for (size_t k = 0; k < rr; k++) pr[k] = (int32_t)((k * 3 + 5) % rr);
    pbuf perm2 = P(pr, rr);
    BOTH(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_ROWS, .dst = R(dst, i), .src = R(src, i), .perm = R(perm2, i), .rows = rr, .cols = cc}));
    cmpi("permute rows", dst, 1);
    pbuf sq = P(x, 30 * 30), sqd = P(NULL, 30 * 30), perm3;
    for (size_t k = 0; k < 30; k++) pr[k] = (int32_t)((k * 11 + 2) % 30);
    perm3 = P(pr, 30);
    BOTH(qd_be_permute(be, &(struct qd_permute_args){.kind = QD_PERM_SYM, .dst = R(sqd, i), .src = R(sq, i), .perm = R(perm3, i), .rows = 30, .cols = 30}));
    cmpi("permute sym", sqd, 1);
    /* the MoE dispatch: gather 13 of the 20 rows, then scatter-add them weighted (distinct indices) */
    int32_t ri[13];
    for (size_t k = 0; k < 13; k++) ri[k] = (int32_t)((k * 3 + 1) % rr);
    pbuf rix = P(ri, 13), rw = P(x + 100, 13), rg = P(NULL, 13 * cc), racc = P(x + 200, rr * cc);
    BOTH(qd_be_rows(be, &(struct qd_rows_args){.kind = QD_ROWS_GATHER, .out = R(rg, i), .x = R(src, i), .idx = R(rix, i), .n = 13, .rows = rr, .cols = cc}));
    cmpi("rows gather", rg, 1);
    BOTH(qd_be_rows(be, &(struct qd_rows_args){.kind = QD_ROWS_SCATTER_ADD, .out = R(racc, i), .x = R(rg, i), .idx = R(rix, i), .w = R(rw, i), .n = 13, .rows = rr, .cols = cc}));
    cmpi("rows scatter_add", racc, 1);
    pfree(rix), pfree(rw), pfree(rg), pfree(racc);
    pfree(a), pfree(b), pfree(c), pfree(perm), pfree(perm2), pfree(perm3), pfree(src), pfree(dst), pfree(sq), pfree(sqd);
    free(x), free(h16), free(f16), free(f64);
}

static void test_gemm_hessian_chol(void) {
    size_t M = 67, N = 45, K = 129;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float *A = rvec(M * K, 1), *B = rvec(K * N, 1), *C = rvec(M * N, 1);
            pbuf a = P(A, M * K), b = P(B, K * N), c = P(C, M * N);
            BOTH(qd_be_gemm(be, &(struct qd_gemm_args){.trans_a = ta, .trans_b = tb, .M = M, .N = N, .K = K, .alpha = 0.5f, .beta = 2.0f,
                                                       .A = R(a, i), .B = R(b, i), .C = R(c, i), .lda = ta ? M : K, .ldb = tb ? K : N, .ldc = N}));
            char name[64];
            snprintf(name, sizeof name, "gemm ta=%d tb=%d", ta, tb);
            cmpf(name, c, 1e-5);
            pfree(a), pfree(b), pfree(c), free(A), free(B), free(C);
        }
    size_t T = 700, Kh = 160;
    char name[64];
    float *X = rvec(T * 200, 1);
    pbuf x = P(X, T * 200), h = P(NULL, Kh * Kh);
    BOTH(qd_be_hessian(be, &(struct qd_hessian_args){.H = R(h, i), .X = R(x, i), .T = T, .K = Kh, .ldx = 200, .alpha = 2.0f / T, .beta = 1.0f}));
    BOTH(qd_be_hessian(be, &(struct qd_hessian_args){.H = R(h, i), .X = QD_REF(x.b[i], 7), .T = T - 1, .K = Kh, .ldx = 200, .alpha = 2.0f / T, .beta = 0.5f}));
    cmpf("hessian (2 batches, beta 0.5)", h, 1e-5);
    float *hv = rvec(Kh, 1);
    for (size_t k = 0; k < Kh; k++) hv[k] = fabsf(hv[k]);
    pbuf v = P(hv, Kh);
    BOTH(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = R(h, i), .n = Kh, .scalar = 0.05f, .v = v.b[i]}));
    cmpf("diag_add", h, 1e-6);
    /* both factor the same (CPU-made) matrix */
    float *H = dl(h, 0);
    pbuf hh = P(H, Kh * Kh);
    BOTH(qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = R(hh, i), .n = Kh}));
    cmpf("chol_inv (U of H^-1, fp64 on both)", hh, 1e-5);
    /* not positive definite: QD_ERR_NUMERIC and no message */
    for (size_t k = 0; k < Kh * Kh; k++) H[k] = k % (Kh + 1) == 0 ? -1.0f : 0.0f;
    pbuf bad = P(H, Kh * Kh);
    for (int i = 0; i < 2; i++) {
        qd_clear_error();
        QD_EXPECT_EQ_INT(qd_be_chol_inv(BE[i], &(struct qd_chol_inv_args){.A = R(bad, i), .n = Kh}), QD_ERR_NUMERIC);
        QD_EXPECT(qd_last_error()[0] == 0);
        /* A unchanged on failure (qd-backend.h): GPTQ factors in place and retries from it */
        float *back = dl(bad, i);
        QD_EXPECT(memcmp(back, H, Kh * Kh * sizeof *H) == 0);
        free(back);
    }
    pfree(x), pfree(h), pfree(v), pfree(hh), pfree(bad), free(X), free(hv), free(H);
    /* ill-conditioned SPD matrices (cond 1e5, as damped Hessians of real activations) */
    for (size_t n = 7; n <= 300; n += 293) {
        float *S = spd_matrix(n, 1e5);
        pbuf s = P(S, n * n);
        BOTH(qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = R(s, i), .n = n}));
        snprintf(name, sizeof name, "chol_inv cond 1e5 n=%zu", n);
        cmpf(name, s, 1e-5);
        pfree(s), free(S);
    }
    /* the upper triangle only, completed by symmetrize; symmetrize alone is a bit copy */
    pbuf hu = P(NULL, Kh * Kh);
    X = rvec(T * 200, 1), x = P(X, T * 200);
    BOTH(qd_be_hessian(be, &(struct qd_hessian_args){.H = R(hu, i), .X = R(x, i), .T = T, .K = Kh, .ldx = 200, .alpha = 2.0f / T, .beta = 1.0f, .upper_only = 1}));
    BOTH(qd_be_hessian(be, &(struct qd_hessian_args){.H = R(hu, i), .X = QD_REF(x.b[i], 9), .T = T - 2, .K = Kh, .ldx = 200, .alpha = 2.0f / T, .beta = 1.0f, .upper_only = 1}));
    BOTH(qd_be_symmetrize(be, &(struct qd_symmetrize_args){.A = R(hu, i), .n = Kh}));
    cmpf("hessian upper_only + symmetrize", hu, 1e-5);
    float *G = rvec(300 * 300, 1);
    pbuf g = P(G, 300 * 300);
    BOTH(qd_be_symmetrize(be, &(struct qd_symmetrize_args){.A = R(g, i), .n = 300}));
    cmpi("symmetrize 300 x 300", g, 1);
    /* fp64 sums of fp32 terms: adding then rounding is the same bits on every backend (one fp64 add
     * and one rounding per element); the triangle form leaves the strict lower part alone */
    for (int tri = 0; tri < 2; tri++) {
        pbuf acc = P(NULL, 2 * 300 * 300), t = P(G, 300 * 300);
        for (int rep = 0; rep < 3; rep++)
            BOTH(qd_be_acc64(be, &(struct qd_acc64_args){.kind = QD_ACC64_ADD, .acc = R(acc, i), .x = R(t, i),
                                                         .n = 300 * 300, .upper_k = tri ? 300 : 0}));
        BOTH(qd_be_acc64(be, &(struct qd_acc64_args){.kind = QD_ACC64_ROUND, .acc = R(acc, i), .x = R(t, i),
                                                     .n = 300 * 300, .upper_k = tri ? 300 : 0}));
        cmpi(tri ? "acc64 upper triangle: 3 adds, round" : "acc64: 3 adds, round", t, 1);
        float *back = dl(t, 0);
        int bad = 0;
        for (size_t r = 0; r < 300; r++)
            for (size_t c = 0; c < 300; c++) {
                float g3 = (float)(3.0 * (double)G[r * 300 + c]);
                bad += back[r * 300 + c] != (tri && c < r ? G[r * 300 + c] : g3);
            }
        QD_EXPECT_EQ_INT(bad, 0);
        free(back);
        pfree(acc), pfree(t);
    }
    pfree(hu), pfree(x), pfree(g), free(X), free(G);
}

static void test_ewise_reduce(void) {
    size_t rows = 37, cols = 300, ld = 320, n = rows * ld;
    float *X = rvec(n, 2), *Y = rvec(n, 2), *V = rvec(ld, 1);
    for (size_t k = 0; k < ld; k++) V[k] = V[k] + (V[k] >= 0 ? 0.5f : -0.5f);
    pbuf x = P(X, n), y = P(Y, n), v = P(V, ld), o = P(NULL, n);
    static const char *names[] = {"add", "mul", "swiglu", "add_rowv", "mul_colv", "div_colv", "mul_rowv", "div_rowv", "scale"};
    for (int k = QD_EW_ADD; k <= QD_EW_SCALE; k++) {
        BOTH(qd_be_ewise(be, &(struct qd_ewise_args){.kind = (qd_ew_kind)k, .out = R(o, i), .x = R(x, i), .y = R(y, i), .v = R(v, i),
                                                     .rows = rows, .cols = cols, .ld = ld, .scalar = 0.37f}));
        char name[64];
        snprintf(name, sizeof name, "ewise %s", names[k]);
        cmpf(name, o, k == QD_EW_SWIGLU ? 1e-6 : 0);
    }
    static const char *rn[] = {"sqdiff", "sumsq", "nonfinite", "absmax"};
    X[5] = NAN, X[77] = INFINITY;
    pbuf xn = P(X, n);
    for (int k = QD_RED_SQDIFF; k <= QD_RED_ABSMAX; k++) {
        double out[2];
        for (int i = 0; i < 2; i++)
            QD_EXPECT_EQ_INT(qd_be_reduce(BE[i], &(struct qd_reduce_args){.kind = (qd_red_kind)k, .a = k == QD_RED_NONFINITE ? R(xn, i) : R(x, i),
                                                                          .b = R(y, i), .n = n, .out = &out[i]}), QD_OK);
        double rel = fabs(out[0] - out[1]) / fmax(fabs(out[0]), 1e-30);
        fprintf(stderr, "  reduce %-27s cpu %.12g test %.12g rel %.3g\n", rn[k], out[0], out[1], rel);
        QD_EXPECT(rel <= 1e-12);
    }
    pbuf cs = P(V, cols);
    BOTH(qd_be_colstat(be, &(struct qd_colstat_args){.kind = QD_COLSTAT_ABS_SUM, .out = R(cs, i), .src = R(x, i), .rows = rows, .cols = cols, .ld = ld, .accumulate = 1}));
    cmpf("colstat abs_sum (accumulate)", cs, 1e-7);
    BOTH(qd_be_colstat(be, &(struct qd_colstat_args){.kind = QD_COLSTAT_GROUP_NORM_SUM, .out = R(cs, i), .src = R(x, i), .rows = rows, .cols = cols, .ld = ld, .group_size = 30}));
    cmpf("colstat group_norm_sum", cs, 1e-6);
    pfree(x), pfree(y), pfree(v), pfree(o), pfree(xn), pfree(cs), free(X), free(Y), free(V);
}

static void test_transformer(void) {
    size_t rows = 50, dim = 1000, ld = 1024;
    float *X = rvec(rows * ld, 1.5f), *Wt = rvec(dim, 1);
    pbuf x = P(X, rows * ld), w = P(Wt, dim), o = P(NULL, rows * ld);
    BOTH(qd_be_rmsnorm(be, &(struct qd_rmsnorm_args){.out = R(o, i), .x = R(x, i), .weight = R(w, i), .rows = rows, .dim = dim, .ld = ld, .eps = 1e-5f}));
    cmpf("rmsnorm", o, 1e-6);
    size_t nseq = 2, T = 200, heads = 8, kvh = 2;
    for (int variant = 0; variant < 3; variant++) {
        size_t hd = variant == 1 ? 64 : 128, window = variant == 2 ? 50 : 0;
        size_t qn = nseq * T * heads * hd, kn = nseq * T * kvh * hd, half = hd / 2;
        float *Q = rvec(qn, 1), *Kk = rvec(kn, 1), *V = rvec(kn, 1), *cs = malloc(T * half * 4), *sn = malloc(T * half * 4);
        for (size_t t = 0; t < T; t++)
            for (size_t j = 0; j < half; j++) {
                double f = t * pow(10000.0, -2.0 * j / hd);
                cs[t * half + j] = (float)cos(f), sn[t * half + j] = (float)sin(f);
            }
        pbuf q = P(Q, qn), k = P(Kk, kn), v = P(V, kn), c = P(cs, T * half), s = P(sn, T * half), out = P(NULL, qn);
        BOTH(qd_be_rope(be, &(struct qd_rope_args){.x = R(q, i), .cos = R(c, i), .sin = R(s, i), .rows = nseq * T, .heads = heads, .head_dim = hd, .ld = heads * hd, .seq_len = T}));
        BOTH(qd_be_rope(be, &(struct qd_rope_args){.x = R(k, i), .cos = R(c, i), .sin = R(s, i), .rows = nseq * T, .heads = kvh, .head_dim = hd, .ld = kvh * hd, .seq_len = T}));
        if (variant == 0) cmpf("rope", q, 1e-7);
        BOTH(qd_be_attention(be, &(struct qd_attention_args){.out = R(out, i), .q = R(q, i), .k = R(k, i), .v = R(v, i), .nseq = nseq, .seq_len = T, .heads = heads,
                                                             .kv_heads = kvh, .head_dim = hd, .window = window, .scale = 1.0f / sqrtf((float)hd)}));
        char name[64];
        snprintf(name, sizeof name, "attention hd=%zu window=%zu", hd, window);
        cmpf(name, out, 2e-5);
        pfree(q), pfree(k), pfree(v), pfree(c), pfree(s), pfree(out), free(Q), free(Kk), free(V), free(cs), free(sn);
    }
    size_t xr = 64, vocab = 3001;
    float *L = rvec(xr * vocab, 4);
    int32_t tg[64];
    for (size_t r = 0; r < xr; r++) tg[r] = (int32_t)((r * 131 + 7) % vocab);
    pbuf l = P(L, xr * vocab), t = P(tg, xr);
    double s[2];
    for (int i = 0; i < 2; i++)
        QD_EXPECT_EQ_INT(qd_be_cross_entropy(BE[i], &(struct qd_xent_args){.logits = R(l, i), .targets = R(t, i), .rows = xr, .vocab = vocab, .sum_out = &s[i]}), QD_OK);
    fprintf(stderr, "  cross_entropy                      cpu %.12g test %.12g\n", s[0], s[1]);
    QD_EXPECT(fabs(s[0] - s[1]) <= 1e-9 * fabs(s[0]));
    pfree(x), pfree(w), pfree(o), pfree(l), pfree(t), free(X), free(Wt), free(L);
}

static void test_quantize(void) {
    size_t N = 96, K = 512, ld = 520;
    float *Wh = rvec(N * ld, 0.02f);
    for (size_t k = 0; k < 128; k++) Wh[3 * ld + k] = 0; /* an all-zero group */
    for (size_t k = 0; k < K; k++) Wh[5 * ld + k] *= 1e-6f; /* a row whose scales underflow F16 */
    for (size_t k = 0; k < K; k++) { /* rows <= 0 whose groups' 8-bit zero is bounded to maxq: BF16 (cfg 11), F16 (12) */
        Wh[7 * ld + k] = k % 32 ? -fabsf(Wh[7 * ld + k]) * 1e-3f : -255.99f * 0x1p-10f;
        Wh[8 * ld + k] = k % 32 ? -fabsf(Wh[8 * ld + k]) * 1e-6f : -25625 * 0x1p-24f;
    }
    for (size_t c = 0; c < sizeof CFGS / sizeof CFGS[0]; c++)
        for (int gsi = 0; gsi < 3; gsi++) {
            size_t gs = gsi == 0 ? 128 : gsi == 1 ? 32 : 0, G = gs ? K / gs : 1;
            pbuf w = P(Wh, N * ld), q = P(NULL, N * ld), codes = P(NULL, N * K), s = P(NULL, G * N), z = P(NULL, G * N);
            BOTH(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = CFGS[c], .W = R(w, i), .Q = R(q, i), .codes = R(codes, i), .scales = R(s, i),
                                                               .zeros = R(z, i), .N = N, .K = K, .ldw = ld, .group_size = gs}));
            char name[96];
            snprintf(name, sizeof name, "quantize %s gs=%zu codes", CFGN[c], gs);
            cmpi(name, codes, 1);
            cmpi("  scales", s, 1), cmpi("  zeros", z, 1), cmpf("  fake-quant", q, 0);
            /* params given, in place */
            BOTH(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = CFGS[c], .W = R(w, i), .Q = R(w, i), .codes = R(codes, i), .scales = R(s, i),
                                                               .zeros = R(z, i), .N = N, .K = K, .ldw = ld, .group_size = gs, .params_in = 1}));
            cmpi("  params_in codes", codes, 1), cmpf("  params_in in place", w, 0);
            pfree(w), pfree(q), pfree(codes), pfree(s), pfree(z);
        }
    free(Wh);
}

static void test_gptq_sweep(void) {
    size_t N = 384, K = 512;
    float *U = make_U(K), *Wh = rvec(N * K, 0.02f);
    pbuf u = P(U, K * K);
    struct { int cfg; size_t gs, B; int stat; } cases[] = {
        {0, 128, 128, 0}, {1, 128, 128, 0}, {0, 32, 128, 0}, {0, 0, 128, 0}, {0, 256, 128, 0}, {2, 128, 128, 0}, {0, 64, 96, 0}, {0, 128, 128, 1},
        {1, 0, 128, 1}, /* one static group: the caller's parameters, g = 0 */
        {6, 0, 128, 1}, {7, 128, 128, 0}, {8, 128, 128, 0}, {7, 128, 128, 1}, /* scales rounded to F16 / BF16 */
    };
    int32_t *pr = malloc(K * 4);
    for (size_t k = 0; k < K; k++) pr[k] = (int32_t)((k * 37 + 11) % K);
    pbuf perm = P(pr, K);
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        size_t gs = cases[t].gs, G = gs ? K / gs : 1;
        pbuf w = P(Wh, N * K), codes = P(NULL, N * K), s = P(NULL, G * N), z = P(NULL, G * N);
        if (cases[t].stat) /* static groups: the caller's parameters from the original W */
            BOTH(qd_be_quantize(be, &(struct qd_quantize_args){.cfg = CFGS[cases[t].cfg], .W = R(w, i), .scales = R(s, i), .zeros = R(z, i), .N = N, .K = K, .ldw = K, .group_size = gs}));
        double loss[2];
        for (int i = 0; i < 2; i++)
            QD_EXPECT_EQ_INT(qd_be_gptq_sweep(BE[i], &(struct qd_gptq_sweep_args){.cfg = CFGS[cases[t].cfg], .W = R(w, i), .U = R(u, i), .codes = R(codes, i), .scales = R(s, i),
                                                                                   .zeros = R(z, i), .perm = cases[t].stat ? R(perm, i) : QD_REF(NULL, 0), .N = N, .K = K,
                                                                                   .group_size = gs, .block_size = cases[t].B, .static_groups = cases[t].stat, .loss_out = &loss[i]}),
                             QD_OK);
        char name[96];
        snprintf(name, sizeof name, "gptq_sweep %s gs=%zu B=%zu%s", CFGN[cases[t].cfg], gs, cases[t].B, cases[t].stat ? " static" : "");
        cmpi(name, codes, 0.999);
        cmp_rms("  dequantized W", w, 1e-2);
        cmpi("  zeros", z, 0.999);
        double rel = fabs(loss[0] - loss[1]) / loss[0];
        fprintf(stderr, "    loss cpu %.8g test %.8g rel %.3g\n", loss[0], loss[1], rel);
        QD_EXPECT(rel < 1e-3);
        pfree(w), pfree(codes), pfree(s), pfree(z);
    }
    pfree(u), pfree(perm), free(U), free(Wh), free(pr);
}

static void test_awq_clip(void) {
    size_t N = 200, K = 256, T = 96;
    float *Wh = rvec(N * K, 0.02f), *Xh = rvec(T * K, 1);
    for (size_t k = 0; k < 40; k++) Wh[k * 5] *= 8; /* outliers make clipping pay */
    for (int c = 3; c <= 10; c = c == 4 ? 9 : c + 1) /* awq w4 asym / sym, with fp32 scales and stored ones */
        for (int gsi = 0; gsi < 2; gsi++) {
            size_t gs = gsi ? 64 : 128, G = K / gs;
            pbuf w = P(Wh, N * K), x = P(Xh, T * K), b = P(NULL, N * G);
            BOTH(qd_be_awq_clip(be, &(struct qd_awq_clip_args){.cfg = CFGS[c], .W = R(w, i), .X = R(x, i), .best_out = R(b, i), .N = N, .K = K, .T = T,
                                                               .group_size = gs, .grid = 20, .max_shrink = 0.5f}));
            char name[96];
            snprintf(name, sizeof name, "awq_clip %s gs=%zu best", CFGN[c], gs);
            cmpi(name, b, 0.99);
            cmp_rms("  clipped W", w, 1e-2);
            pfree(w), pfree(x), pfree(b);
        }
    free(Wh), free(Xh);
}

/* every op of one device against the reference */
static void compare_device(const qd_device_info *d) {
    DEV = *d;
    qd_backend_spec spec = {.kind = d->kind, .device = d->device, .numerics = QD_NUMERICS_FAST};
    if (d->kind == QD_BACKEND_CPU) spec.numerics = QD_NUMERICS_EXACT;
    const char *math = qd_param_str(QD_PARAM_CUDA_MATH);
    if (d->kind == QD_BACKEND_CUDA && math && strcmp(math, "fp32")) {
        fprintf(stderr, "skip %s: QD_CUDA_MATH=%s (the tolerances are for fp32)\n", d->name, math);
        return;
    }
    char name[64];
    qd_backend_spec_name(&spec, name, sizeof name);
    fprintf(stderr, "== %s (%s, %.1f GB) against cpu\n", name, d->name, (double)d->total_bytes / 1e9);
    QD_EXPECT_EQ_INT(qd_backend_open(&spec, &BE[1]), QD_OK);
    if (!BE[1]) return;
    BE1_NUMERICS = spec.numerics;
    QD_RUN(test_movement);
    QD_RUN(test_gemm_hessian_chol);
    QD_RUN(test_ewise_reduce);
    QD_RUN(test_transformer);
    QD_RUN(test_quantize);
    QD_RUN(test_gptq_sweep);
    QD_RUN(test_awq_clip);
    qd_test_compare_fp8();
    qd_test_compare_exact();
    qd_test_compare_cuda();
    qd_be_free(BE[1]);
    BE[1] = NULL;
}

int qd_test_backend_compare(void) {
    int checks0 = qd_test_checks, failures0 = qd_test_failures; /* the naive half's, counted already */
    qd_device_info devs[16];
    int n = 0;
    QD_EXPECT_EQ_INT(qd_backend_devices(devs, 16, &n), QD_OK);
    QD_EXPECT(n >= 1 && devs[0].kind == QD_BACKEND_CPU);
    if (qd_backend_cpu_create(0, &BE[0]) != QD_OK) return 1;
    for (int i = 0; i < n; i++) compare_device(&devs[i]);
    qd_be_free(BE[0]);
    fprintf(stderr, "%d checks, %d failed\n", qd_test_checks - checks0, qd_test_failures - failures0);
    return qd_test_failures > failures0;
}
