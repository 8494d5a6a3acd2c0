/* SPDX-License-Identifier: MIT
 * backend-compare.c - part of tests/kernels/test-backend-ops (backend-compare.h): every backend the
 * registry offers (qd_backend_devices) against the CPU backend in fast numerics, the reference, on the
 * same random data (ggml's test-backend-ops is the model). A CUDA device runs as itself; the CPU entry
 * runs the CPU backend in exact numerics (kernels/cpu/exact.c, an independent fp64 path), so a build
 * without a GPU still compares two implementations of every op. Per-op tolerances: bit-exact for data
 * movement, ~1e-6 relative for elementwise and transformer ops, 1e-5 for fp32 GEMMs, integer codes
 * equal on >= 99.9% of weights for the GPTQ sweep (its lazy update is a GEMM whose rounding differs
 * between BLAS orders) and on all of them for plain quantization; then the same ops with both sides in
 * exact numerics (qd-backend.h), where every output must be bit-identical. CUDA only: the optional
 * u8_codes op must exist, and the bf16 tensor-core attention is checked. A CUDA device is skipped
 * when QD_CUDA_MATH is set to other than fp32 (the tolerances are for fp32). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend-compare.h"
#include "qd-backend-cpu.h"
#include "qd-backend.h"
#include "qd-backends.h"
#include "qd-dtype.h"
#include "qd-log.h"
#include "qd-param.h"
#include "qd-test.h"
#ifdef QD_HAVE_CUDA
#include "qd-backend-cuda.h"
#endif

static qd_backend_t BE[2];     /* 0 = the reference (cpu, fast), 1 = the backend under test */
static qd_numerics BE1_NUMERICS; /* BE[1]'s own numerics, restored after the exact section */
static qd_device_info DEV;     /* the device under test */
static uint64_t rng_state;

static double urand(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(2 * M_PI * urand())); }
static float *rvec(size_t n, float s) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = s * nrand();
    return v;
}

typedef struct { qd_buf_t b[2]; size_t n; } pbuf;
#define R(p, i) QD_REF((p).b[i], 0)

static pbuf P(const void *host, size_t n) {
    pbuf p = {{NULL, NULL}, n};
    for (int i = 0; i < 2; i++) {
        if (qd_buf_alloc(BE[i], n, &p.b[i]) != QD_OK) exit(1);
        if (host && qd_be_upload(BE[i], &(struct qd_upload_args){.dst = R(p, i), .src = host, .src_dtype = QD_DT_F32, .n = n}) != QD_OK)
            exit(1);
    }
    return p;
}
static void pfree(pbuf p) { qd_buf_free(p.b[0]), qd_buf_free(p.b[1]); }
static void *dl(pbuf p, int i) {
    void *h = malloc(p.n * 4);
    if (qd_be_download(BE[i], &(struct qd_download_args){.src = R(p, i), .dst = h, .n = p.n}) != QD_OK) exit(1);
    return h;
}
/* max |test - cpu| / max |cpu| over the buffer, printed */
static double cmpf(const char *what, pbuf p, double tol) {
    float *a = dl(p, 0), *b = dl(p, 1);
    double num = 0, den = 0;
    int nan = 0;
    for (size_t i = 0; i < p.n; i++) {
        if (isnan(a[i]) != isnan(b[i])) nan = 1;
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)a[i]));
    }
    double rel = num / (den > 0 ? den : 1);
    fprintf(stderr, "  %-34s rel err %.3g (tol %.0e)%s\n", what, rel, tol, nan ? " NaN MISMATCH" : "");
    QD_EXPECT(!nan && rel <= tol);
    free(a), free(b);
    return rel;
}
/* ||test - cpu|| / ||cpu|| (for outputs where a few flipped codes are allowed) */
static double cmp_rms(const char *what, pbuf p, double tol) {
    float *a = dl(p, 0), *b = dl(p, 1);
    double num = 0, den = 0;
    for (size_t i = 0; i < p.n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)a[i] * a[i];
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    fprintf(stderr, "  %-34s rms rel err %.3g (tol %.0e)\n", what, rel, tol);
    QD_EXPECT(rel <= tol);
    free(a), free(b);
    return rel;
}
/* fraction of equal 4-byte elements */
static double cmpi(const char *what, pbuf p, double min_frac) {
    uint32_t *a = dl(p, 0), *b = dl(p, 1);
    size_t same = 0;
    for (size_t i = 0; i < p.n; i++) same += a[i] == b[i];
    double f = (double)same / (double)p.n;
    fprintf(stderr, "  %-34s equal %.6f (%zu of %zu differ, need >= %.4f)\n", what, f, p.n - same, p.n, min_frac);
    QD_EXPECT(f >= min_frac);
    free(a), free(b);
    return f;
}
#define BOTH(call)                                  \
    for (int i = 0; i < 2; i++) {                   \
        qd_backend_t be = BE[i];                    \
        QD_EXPECT_EQ_INT((call), QD_OK);            \
    }

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

#ifdef QD_HAVE_CUDA
/* ---- QD_CUDA_MATH=bf16: the tensor-core attention (attention-tc.cu) against the CPU's fp32 ----
 * Its operands Q, K, P and V are rounded to bf16 (8 significant bits, 2^-9 relative), accumulation and
 * softmax stay fp32, so the tolerance is 2e-2 relative max error (max |gpu - cpu| / max |cpu|), against
 * ~3e-7 for the fp32 kernel. A third backend with QD_CUDA_ATTN=fp32 must give the fp32 kernel's bits. */
static qd_backend_t make_cuda(const char *math, const char *attn) {
    qd_backend_t be = NULL;
    setenv("QD_CUDA_MATH", math, 1);
    if (attn) setenv("QD_CUDA_ATTN", attn, 1);
    qd_status st = qd_backend_cuda_create(0, &be);
    unsetenv("QD_CUDA_MATH"), unsetenv("QD_CUDA_ATTN");
    if (st != QD_OK) exit(1);
    return be;
}

/* one attention on the CPU (BE[0]), the fp32 CUDA kernel (BE[1]) and the bf16 backend tc */
static void attn_case(qd_backend_t tc, size_t nseq, size_t T, size_t heads, size_t kvh,
                      size_t hd, size_t window) {
    size_t qn = nseq * T * heads * hd, kn = nseq * T * kvh * hd;
    float *Q = rvec(qn, 1), *Kk = rvec(kn, 1), *V = rvec(kn, 1);
    pbuf q = P(Q, qn), k = P(Kk, kn), v = P(V, kn), out = P(NULL, qn);
    struct qd_attention_args a = {.nseq = nseq, .seq_len = T, .heads = heads, .kv_heads = kvh, .head_dim = hd,
                                  .window = window, .scale = 1.0f / sqrtf((float)hd)};
    for (int i = 0; i < 2; i++) {
        a.out = R(out, i), a.q = R(q, i), a.k = R(k, i), a.v = R(v, i);
        QD_EXPECT_EQ_INT(qd_be_attention(BE[i], &a), QD_OK);
    }
    /* the bf16 result goes into a buffer of the tc backend, then onto the CPU side of a pair */
    qd_buf_t tq = NULL, tk = NULL, tv = NULL, to = NULL;
    if (qd_buf_alloc(tc, qn, &tq) || qd_buf_alloc(tc, kn, &tk) || qd_buf_alloc(tc, kn, &tv) || qd_buf_alloc(tc, qn, &to)) exit(1);
    QD_EXPECT_EQ_INT(qd_be_upload(tc, &(struct qd_upload_args){.dst = QD_REF(tq, 0), .src = Q, .src_dtype = QD_DT_F32, .n = qn}), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_upload(tc, &(struct qd_upload_args){.dst = QD_REF(tk, 0), .src = Kk, .src_dtype = QD_DT_F32, .n = kn}), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_upload(tc, &(struct qd_upload_args){.dst = QD_REF(tv, 0), .src = V, .src_dtype = QD_DT_F32, .n = kn}), QD_OK);
    a.out = QD_REF(to, 0), a.q = QD_REF(tq, 0), a.k = QD_REF(tk, 0), a.v = QD_REF(tv, 0);
    QD_EXPECT_EQ_INT(qd_be_attention(tc, &a), QD_OK);
    float *got = malloc(qn * sizeof *got);
    QD_EXPECT_EQ_INT(qd_be_download(tc, &(struct qd_download_args){.src = QD_REF(to, 0), .dst = got, .n = qn}), QD_OK);
    char name[96];
    snprintf(name, sizeof name, "attention bf16-tc T=%zu h=%zu/%zu hd=%zu w=%zu", T, heads, kvh, hd, window);
    pbuf cmp = P(NULL, qn); /* [0] = the CPU's result, [1] = the tensor-core result */
    float *cpu = dl(out, 0);
    QD_EXPECT_EQ_INT(qd_be_upload(BE[0], &(struct qd_upload_args){.dst = R(cmp, 0), .src = cpu, .src_dtype = QD_DT_F32, .n = qn}), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_upload(BE[1], &(struct qd_upload_args){.dst = R(cmp, 1), .src = got, .src_dtype = QD_DT_F32, .n = qn}), QD_OK);
    cmpf(name, cmp, 2e-2);
    qd_buf_free(tq), qd_buf_free(tk), qd_buf_free(tv), qd_buf_free(to);
    pfree(q), pfree(k), pfree(v), pfree(out), pfree(cmp);
    free(Q), free(Kk), free(V), free(got), free(cpu);
}

/* QD_CUDA_ATTN=fp32 with QD_CUDA_MATH=bf16 runs the CUDA-core kernel: equal bits to the fp32 backend */
static void attn_override_case(qd_backend_t off) {
    size_t nseq = 1, T = 130, heads = 4, kvh = 2, hd = 64, qn = nseq * T * heads * hd, kn = nseq * T * kvh * hd;
    float *Q = rvec(qn, 1), *Kk = rvec(kn, 1), *V = rvec(kn, 1), *o1 = malloc(qn * 4), *o2 = malloc(qn * 4);
    qd_backend_t bes[2] = {BE[1], off};
    float *outs[2] = {o1, o2};
    for (int i = 0; i < 2; i++) {
        qd_buf_t bq = NULL, bk = NULL, bv = NULL, bo = NULL;
        if (qd_buf_alloc(bes[i], qn, &bq) || qd_buf_alloc(bes[i], kn, &bk) || qd_buf_alloc(bes[i], kn, &bv) || qd_buf_alloc(bes[i], qn, &bo)) exit(1);
        QD_EXPECT_EQ_INT(qd_be_upload(bes[i], &(struct qd_upload_args){.dst = QD_REF(bq, 0), .src = Q, .src_dtype = QD_DT_F32, .n = qn}), QD_OK);
        QD_EXPECT_EQ_INT(qd_be_upload(bes[i], &(struct qd_upload_args){.dst = QD_REF(bk, 0), .src = Kk, .src_dtype = QD_DT_F32, .n = kn}), QD_OK);
        QD_EXPECT_EQ_INT(qd_be_upload(bes[i], &(struct qd_upload_args){.dst = QD_REF(bv, 0), .src = V, .src_dtype = QD_DT_F32, .n = kn}), QD_OK);
        QD_EXPECT_EQ_INT(qd_be_attention(bes[i], &(struct qd_attention_args){.out = QD_REF(bo, 0), .q = QD_REF(bq, 0), .k = QD_REF(bk, 0), .v = QD_REF(bv, 0),
                                                                            .nseq = nseq, .seq_len = T, .heads = heads, .kv_heads = kvh, .head_dim = hd,
                                                                            .scale = 0.125f}), QD_OK);
        QD_EXPECT_EQ_INT(qd_be_download(bes[i], &(struct qd_download_args){.src = QD_REF(bo, 0), .dst = outs[i], .n = qn}), QD_OK);
        qd_buf_free(bq), qd_buf_free(bk), qd_buf_free(bv), qd_buf_free(bo);
    }
    int same = memcmp(o1, o2, qn * 4) == 0;
    fprintf(stderr, "  %-34s %s\n", "QD_CUDA_ATTN=fp32 under bf16", same ? "fp32 kernel, bit-equal" : "DIFFERS from the fp32 kernel");
    QD_EXPECT(same);
    free(Q), free(Kk), free(V), free(o1), free(o2);
}

/* Llama-3-8B attention of one 8192-token chunk (4 x 2048, 32 heads, 8 kv heads, hd 128): the fp32
 * kernel and the tensor-core kernel timed on the device, and compared with each other */
static void attn_timing(qd_backend_t tc) {
    size_t nseq = 4, T = 2048, heads = 32, kvh = 8, hd = 128, qn = nseq * T * heads * hd, kn = nseq * T * kvh * hd;
    float *Q = rvec(qn, 1), *Kk = rvec(kn, 1), *V = rvec(kn, 1);
    qd_backend_t bes[2] = {BE[1], tc};
    const char *nm[2] = {"fp32 CUDA cores", "bf16 tensor cores"};
    float *outs[2];
    double flop = 4.0 * (double)nseq * heads * hd * ((double)T * (T + 1) / 2); /* QK^T and PV, causal half */
    for (int i = 0; i < 2; i++) {
        qd_buf_t bq = NULL, bk = NULL, bv = NULL, bo = NULL;
        if (qd_buf_alloc(bes[i], qn, &bq) || qd_buf_alloc(bes[i], kn, &bk) || qd_buf_alloc(bes[i], kn, &bv) || qd_buf_alloc(bes[i], qn, &bo)) exit(1);
        QD_EXPECT_EQ_INT(qd_be_upload(bes[i], &(struct qd_upload_args){.dst = QD_REF(bq, 0), .src = Q, .src_dtype = QD_DT_F32, .n = qn}), QD_OK);
        QD_EXPECT_EQ_INT(qd_be_upload(bes[i], &(struct qd_upload_args){.dst = QD_REF(bk, 0), .src = Kk, .src_dtype = QD_DT_F32, .n = kn}), QD_OK);
        QD_EXPECT_EQ_INT(qd_be_upload(bes[i], &(struct qd_upload_args){.dst = QD_REF(bv, 0), .src = V, .src_dtype = QD_DT_F32, .n = kn}), QD_OK);
        struct qd_attention_args a = {.out = QD_REF(bo, 0), .q = QD_REF(bq, 0), .k = QD_REF(bk, 0), .v = QD_REF(bv, 0), .nseq = nseq,
                                      .seq_len = T, .heads = heads, .kv_heads = kvh, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd)};
        QD_EXPECT_EQ_INT(qd_be_attention(bes[i], &a), QD_OK); /* warm-up */
        QD_EXPECT_EQ_INT(qd_be_synchronize(bes[i]), QD_OK);
        int reps = 5;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < reps; r++) QD_EXPECT_EQ_INT(qd_be_attention(bes[i], &a), QD_OK);
        QD_EXPECT_EQ_INT(qd_be_synchronize(bes[i]), QD_OK);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double sec = ((double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9) / reps;
        fprintf(stderr, "  timing attention %-18s 4x2048 h32/8 hd128: %.2f ms, %.1f TFLOP/s (x 32 chunks = %.3f s per 8B block forward)\n",
                nm[i], sec * 1e3, flop / sec / 1e12, sec * 32);
        outs[i] = malloc(qn * 4);
        QD_EXPECT_EQ_INT(qd_be_download(bes[i], &(struct qd_download_args){.src = QD_REF(bo, 0), .dst = outs[i], .n = qn}), QD_OK);
        qd_buf_free(bq), qd_buf_free(bk), qd_buf_free(bv), qd_buf_free(bo);
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < qn; i++) num = fmax(num, fabs((double)outs[1][i] - outs[0][i])), den = fmax(den, fabs((double)outs[0][i]));
    fprintf(stderr, "  %-34s rel err %.3g (tol 2e-02)\n", "attention bf16-tc vs fp32 kernel, 8B chunk", num / den);
    QD_EXPECT(num / den <= 2e-2);
    free(Q), free(Kk), free(V), free(outs[0]), free(outs[1]);
}

static void test_attention_bf16(void) {
    qd_backend_t tc = make_cuda("bf16", NULL), off = make_cuda("bf16", "fp32");
    attn_case(tc, 1, 2048, 4, 2, 128, 0);   /* seq 2048, GQA 2:1 */
    attn_case(tc, 2, 2048, 2, 1, 64, 0);    /* hd 64, GQA 2:1, two sequences */
    attn_case(tc, 3, 333, 8, 2, 128, 0);    /* odd length: partial query and key tiles */
    attn_case(tc, 2, 77, 4, 4, 64, 0);      /* shorter than one tile, no GQA */
    attn_case(tc, 2, 700, 8, 2, 128, 100);  /* sliding window, not a multiple of the tile */
    attn_case(tc, 1, 1000, 4, 1, 64, 64);   /* window = tile, GQA 4:1 */
    attn_case(tc, 1, 1, 2, 1, 128, 0);      /* one token */
    attn_case(tc, 2, 200, 8, 2, 96, 0);     /* hd 96: not taken, falls back to the fp32 kernel */
    attn_override_case(off);
    attn_timing(tc);
    qd_be_free(tc), qd_be_free(off);
}
#endif

static const qd_qcfg CFGS[] = {
    {.kind = QD_QZ_MINMAX, .bits = 4, .sym = 0},
    {.kind = QD_QZ_MINMAX, .bits = 4, .sym = 1},
    {.kind = QD_QZ_MINMAX, .bits = 3, .sym = 0, .mse = 1, .mse_norm = 2.4f, .mse_grid = 100, .mse_maxshrink = 0.8f},
    {.kind = QD_QZ_AWQ, .bits = 4, .sym = 0},
    {.kind = QD_QZ_AWQ, .bits = 4, .sym = 1},
    {.kind = QD_QZ_MINMAX, .bits = 8, .sym = 0},
};
static const char *CFGN[] = {"minmax w4 asym", "minmax w4 sym", "minmax w3 mse", "awq w4 asym", "awq w4 sym", "minmax w8"};

static void test_quantize(void) {
    size_t N = 96, K = 512, ld = 520;
    float *Wh = rvec(N * ld, 0.02f);
    for (size_t k = 0; k < 128; k++) Wh[3 * ld + k] = 0; /* an all-zero group */
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

/* a damped random Hessian's U, made on the CPU and uploaded to both */
static float *make_U(size_t K) {
    size_t T = 2 * K;
    float *X = rvec(T * K, 1);
    for (size_t t = 0; t < T; t++)
        for (size_t k = 0; k < K; k++) X[t * K + k] *= 1.0f + (float)(k % 7); /* uneven channels */
    qd_backend_t cpu = BE[0];
    qd_buf_t x, h;
    if (qd_buf_alloc(cpu, T * K, &x) || qd_buf_alloc(cpu, K * K, &h)) exit(1);
    qd_be_upload(cpu, &(struct qd_upload_args){.dst = QD_REF(x, 0), .src = X, .src_dtype = QD_DT_F32, .n = T * K});
    qd_be_hessian(cpu, &(struct qd_hessian_args){.H = QD_REF(h, 0), .X = QD_REF(x, 0), .T = T, .K = K, .ldx = K, .alpha = 2.0f / T, .beta = 0});
    float *H = malloc(K * K * 4);
    qd_be_download(cpu, &(struct qd_download_args){.src = QD_REF(h, 0), .dst = H, .n = K * K});
    double mean = 0;
    for (size_t k = 0; k < K; k++) mean += H[k * K + k];
    mean /= K;
    qd_be_diag_add(cpu, &(struct qd_diag_add_args){.A = QD_REF(h, 0), .n = K, .scalar = (float)(0.01 * mean)});
    if (qd_be_chol_inv(cpu, &(struct qd_chol_inv_args){.A = QD_REF(h, 0), .n = K}) != QD_OK) exit(1);
    qd_be_download(cpu, &(struct qd_download_args){.src = QD_REF(h, 0), .dst = H, .n = K * K});
    qd_buf_free(x), qd_buf_free(h), free(X);
    return H;
}

static void test_gptq_sweep(void) {
    size_t N = 384, K = 512;
    float *U = make_U(K), *Wh = rvec(N * K, 0.02f);
    pbuf u = P(U, K * K);
    struct { int cfg; size_t gs, B; int stat; } cases[] = {
        {0, 128, 128, 0}, {1, 128, 128, 0}, {0, 32, 128, 0}, {0, 0, 128, 0}, {0, 256, 128, 0}, {2, 128, 128, 0}, {0, 64, 96, 0}, {0, 128, 128, 1},
        {1, 0, 128, 1}, /* one static group: the caller's parameters, g = 0 */
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
    for (int c = 3; c <= 4; c++)
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

/* the optional u8_codes op (CUDA only): packing int32 codes to bytes and dequantizing byte codes must
 * equal the host's narrowing and (float)(code - zero) * scale bit for bit */
#define CK(call) QD_EXPECT_EQ_INT((call), QD_OK)
static void test_u8_codes(void) {
    qd_backend_t be = BE[1];
    if (DEV.kind != QD_BACKEND_CUDA && !qd_be_has(be, QD_OPT_U8_CODES)) {
        fprintf(stderr, "  u8_codes: optional op absent on %s\n", DEV.name);
        return;
    }
    QD_EXPECT(qd_be_has(be, QD_OPT_U8_CODES)); /* the CUDA backend installs quantized weights with it */
    const size_t N = 37, K = 130, G = 5, n = N * K, words = (n + 3) / 4;
    int32_t *codes = malloc(n * 4), *zeros = malloc(G * N * 4), *g_idx = malloc(K * 4);
    float *scales = rvec(G * N, 0.01f), *W = malloc(n * 4);
    uint8_t *bytes = calloc(words, 4), *back = calloc(words, 4);
    for (size_t i = 0; i < n; i++) codes[i] = (int32_t)(urand() * 256) & 255, bytes[i] = (uint8_t)codes[i];
    for (size_t i = 0; i < G * N; i++) zeros[i] = (int32_t)(urand() * 256) & 255;
    for (size_t k = 0; k < K; k++) g_idx[k] = (int32_t)((k * 7) % G); /* not consecutive: act-order's case */
    qd_buf_t bc, bp, bb, bs, bz, bg, bw;
    CK(qd_buf_alloc(be, n, &bc));
    CK(qd_buf_alloc(be, words, &bp));
    CK(qd_buf_alloc(be, words, &bb));
    CK(qd_buf_alloc(be, G * N, &bs));
    CK(qd_buf_alloc(be, G * N, &bz));
    CK(qd_buf_alloc(be, K, &bg));
    CK(qd_buf_alloc(be, n, &bw));
    CK(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bc, 0), .src = codes, .src_dtype = QD_DT_I32, .n = n}));
    CK(qd_be_u8_codes(be, &(struct qd_u8_codes_args){.dst = QD_REF(bp, 0), .src = QD_REF(bc, 0), .n = n}));
    CK(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(bp, 0), .dst = back, .n = words}));
    QD_EXPECT(memcmp(back, bytes, n) == 0);
    CK(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bb, 0), .src = bytes, .src_dtype = QD_DT_U32, .n = words}));
    CK(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bs, 0), .src = scales, .src_dtype = QD_DT_F32, .n = G * N}));
    CK(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bz, 0), .src = zeros, .src_dtype = QD_DT_I32, .n = G * N}));
    CK(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bg, 0), .src = g_idx, .src_dtype = QD_DT_I32, .n = K}));
    CK(qd_be_u8_codes(be, &(struct qd_u8_codes_args){.dequant = 1, .W = QD_REF(bw, 0), .codes = QD_REF(bb, 0),
                                                     .scales = QD_REF(bs, 0), .zeros = QD_REF(bz, 0),
                                                     .g_idx = QD_REF(bg, 0), .N = N, .K = K, .G = G}));
    CK(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(bw, 0), .dst = W, .n = n}));
    size_t bad = 0;
    for (size_t r = 0; r < N; r++)
        for (size_t k = 0; k < K; k++) {
            size_t gi = (size_t)g_idx[k] * N + r;
            float want = (float)((int)bytes[r * K + k] - zeros[gi]) * scales[gi];
            bad += memcmp(&want, &W[r * K + k], 4) != 0;
        }
    fprintf(stderr, "  u8_codes: pack %s, dequant %zu of %zu differ\n", memcmp(back, bytes, n) ? "DIFFERS" : "bit-exact",
            bad, n);
    QD_EXPECT(bad == 0);
    qd_buf_free(bc), qd_buf_free(bp), qd_buf_free(bb), qd_buf_free(bs), qd_buf_free(bz), qd_buf_free(bg), qd_buf_free(bw);
    free(codes), free(zeros), free(g_idx), free(scales), free(W), free(bytes), free(back);
}

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
    for (int c = 3; c <= 4; c++) {
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
    QD_RUN(test_exact_linear);
    QD_RUN(test_exact_transformer);
    QD_RUN(test_exact_quant);
    QD_RUN(test_u8_codes);
#ifdef QD_HAVE_CUDA
    if (d->kind == QD_BACKEND_CUDA)
        QD_RUN(test_attention_bf16); /* last: a fault in the new kernel would poison the context for the rest */
#endif
    qd_be_free(BE[1]);
    BE[1] = NULL;
}

int qd_test_backend_compare(uint64_t seed) {
    rng_state = seed;
    qd_device_info devs[16];
    int n = 0;
    QD_EXPECT_EQ_INT(qd_backend_devices(devs, 16, &n), QD_OK);
    QD_EXPECT(n >= 1 && devs[0].kind == QD_BACKEND_CPU);
    if (qd_backend_cpu_create(0, &BE[0]) != QD_OK) return 1;
    for (int i = 0; i < n; i++) compare_device(&devs[i]);
    qd_be_free(BE[0]);
    return QD_TEST_END();
}
