/* SPDX-License-Identifier: MIT
 * backend-compare-cuda.c - part of tests/kernels/test-backend-ops (backend-compare-util.h): the ops
 * only the CUDA backend has, the optional u8_codes op (any backend that offers it) and, in a build with
 * CUDA, the tf32/bf16 Hessian strips and the bf16 tensor-core attention. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend-compare-util.h"
#include "qd-backend.h"
#include "qd-dtype.h"
#ifdef QD_HAVE_CUDA
#include "qd-backend-cuda.h"
#endif

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

/* ---- the Hessian on tensor cores (hessian.cu's strips over the lower column-major triangle) ----
 * tf32 / bf16 operands with fp32 accumulation against the CPU's fp32 SYRK: max |gpu - cpu| / max |cpu|
 * within 5e-3 / 2e-2. Strip widths that divide K, that do not, and one strip for all of K; the same
 * backend's full result must equal its upper_only + symmetrize result bit for bit (same GEMMs). */
static void hess_case(const char *math, int tile, double tol) {
    char tv[16];
    snprintf(tv, sizeof tv, "%d", tile);
    setenv("QD_HESS_TILE", tv, 1);
    qd_backend_t tc = make_cuda(math, NULL);
    unsetenv("QD_HESS_TILE");
    size_t T = 500, K = 300, ld = 310;
    float *X = rvec(T * ld, 1);
    qd_buf_t bx = NULL, bf = NULL, bu = NULL;
    if (qd_buf_alloc(tc, T * ld, &bx) || qd_buf_alloc(tc, K * K, &bf) || qd_buf_alloc(tc, K * K, &bu)) exit(1);
    QD_EXPECT_EQ_INT(qd_be_upload(tc, &(struct qd_upload_args){.dst = QD_REF(bx, 0), .src = X, .src_dtype = QD_DT_F32, .n = T * ld}), QD_OK);
    pbuf x = P(X, T * ld), h = P(NULL, K * K);
    for (int pass = 0; pass < 2; pass++) { /* two batches, the second scaling the first by 0.5 */
        struct qd_hessian_args a = {.T = T - 3 * pass, .K = K, .ldx = ld, .alpha = 2.0f / T, .beta = pass ? 0.5f : 1.0f};
        a.H = R(h, 0), a.X = QD_REF(x.b[0], 5 * pass);
        QD_EXPECT_EQ_INT(qd_be_hessian(BE[0], &a), QD_OK);
        a.H = QD_REF(bf, 0), a.X = QD_REF(bx, 5 * pass);
        QD_EXPECT_EQ_INT(qd_be_hessian(tc, &a), QD_OK);
        a.H = QD_REF(bu, 0), a.upper_only = 1;
        QD_EXPECT_EQ_INT(qd_be_hessian(tc, &a), QD_OK);
    }
    QD_EXPECT_EQ_INT(qd_be_symmetrize(tc, &(struct qd_symmetrize_args){.A = QD_REF(bu, 0), .n = K}), QD_OK);
    float *full = malloc(K * K * 4), *upper = malloc(K * K * 4), *cpu = dl(h, 0);
    QD_EXPECT_EQ_INT(qd_be_download(tc, &(struct qd_download_args){.src = QD_REF(bf, 0), .dst = full, .n = K * K}), QD_OK);
    QD_EXPECT_EQ_INT(qd_be_download(tc, &(struct qd_download_args){.src = QD_REF(bu, 0), .dst = upper, .n = K * K}), QD_OK);
    double num = 0, den = 0;
    for (size_t i = 0; i < K * K; i++) num = fmax(num, fabs((double)full[i] - cpu[i])), den = fmax(den, fabs((double)cpu[i]));
    int same = memcmp(full, upper, K * K * 4) == 0;
    fprintf(stderr, "  hessian %s strips of %d, K=%zu: rel err %.3g (tol %.0e), upper_only+symmetrize %s\n", math, tile, K,
            num / den, tol, same ? "bit-equal" : "DIFFERS");
    QD_EXPECT(num / den <= tol);
    QD_EXPECT(same);
    qd_buf_free(bx), qd_buf_free(bf), qd_buf_free(bu), pfree(x), pfree(h);
    free(X), free(full), free(upper), free(cpu);
    qd_be_free(tc);
}

static void test_hessian_tc(void) {
    const int tiles[3] = {64, 112, 4096};
    for (int t = 0; t < 3; t++) hess_case("tf32", tiles[t], 5e-3), hess_case("bf16", tiles[t], 2e-2);
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

/* uploads and downloads large enough for the CUDA backend's pinned staging (chunks of 32 MiB in two
 * alternating halves, kernels/cuda/memory.cu): 3.4 chunks of fp32 and 1.7 of bf16 come back bit for bit,
 * and a download after an upload sees the upload (stream order through the shared halves) */
static void test_staged_copies(void) {
    qd_backend_t be = BE[1];
    const size_t n = ((size_t)110 << 20) / 4 + 7; /* not a multiple of a chunk */
    float *x = rvec(n, 1), *back = malloc(n * 4);
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = qd_f32_to_bf16(x[i]);
    qd_buf_t b = NULL, c = NULL;
    CK(qd_buf_alloc(be, n, &b));
    CK(qd_buf_alloc(be, n, &c));
    CK(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b, 0), .src = x, .src_dtype = QD_DT_F32, .n = n}));
    CK(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(c, 0), .src = h, .src_dtype = QD_DT_BF16, .n = n / 2}));
    float keep = x[5];
    x[5] = keep + 1.0f; /* the caller may reuse its buffer once upload returns */
    CK(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(b, 0), .dst = back, .n = n}));
    x[5] = keep; /* the device holds what was uploaded, not the later write */
    int same = memcmp(back, x, n * 4) == 0;
    CK(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(c, 1), .dst = back, .n = n / 2 - 1}));
    size_t bad = 0;
    for (size_t i = 1; i < n / 2; i++) {
        uint32_t u = (uint32_t)h[i] << 16;
        bad += memcmp(&u, &back[i - 1], 4) != 0;
    }
    fprintf(stderr, "  staged copies %zu MB: fp32 round trip %s, bf16 upload %zu differ\n", n * 4 >> 20,
            same ? "bit-exact" : "DIFFERS", bad);
    QD_EXPECT(same && bad == 0);
    qd_buf_free(b), qd_buf_free(c);
    free(x), free(back), free(h);
}

void qd_test_compare_cuda(void) {
    QD_RUN(test_staged_copies);
    QD_RUN(test_u8_codes);
#ifdef QD_HAVE_CUDA
    if (DEV.kind == QD_BACKEND_CUDA) QD_RUN(test_hessian_tc);
    if (DEV.kind == QD_BACKEND_CUDA)
        QD_RUN(test_attention_bf16); /* last: a fault in the new kernel would poison the context for the rest */
#endif
}
