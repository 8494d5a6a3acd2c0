/* SPDX-License-Identifier: MIT
 * bench-gptq-layer.c - GPTQ's per-layer GPU work through the backend ops, on real architectures'
 * layer shapes with random data: Hessians of a block's four distinct Linear inputs (q/k/v share one,
 * gate/up share one) over `tokens` calibration tokens fed in chunks, then per layer damping,
 * chol_inv and the column sweep (W4 g128 asym min-max, block 128, act-order off), and the download of
 * codes/scales/zeros. Prints one line per layer and per-phase totals for the block, and the GPU memory
 * peak (cudaMemGetInfo after each layer). Random data: timings only, no quality.
 *
 *   bench-gptq-layer [--model llama3-8b|llama3-70b|qwen2.5-7b] [--backend cuda|cpu] [--tokens N]
 *                    [--chunk N] [--reps N] [--bits B] [--group G]
 * QD_CUDA_MATH=fp32|tf32|bf16 picks the CUDA GEMM math (kernels/cuda). Built by bench/run_bench.sh. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd-backend-cpu.h"
#include "qd-backend.h"
#include "qd-log.h"
#ifdef QD_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "qd-backend-cuda.h"
#endif

struct shape { const char *name; size_t hidden, inter, heads, kv, hd; };
static const struct shape SHAPES[] = {
    {"llama3-8b", 4096, 14336, 32, 8, 128},
    {"llama3-70b", 8192, 28672, 64, 8, 128},
    {"qwen2.5-7b", 3584, 18944, 28, 4, 128},
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rs = 0x1234567;
static float frand(void) { /* approx N(0,1): Irwin-Hall of 4 uniforms */
    float s = 0;
    for (int i = 0; i < 4; i++) {
        rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
        s += (float)(rs >> 40) / 16777216.0f;
    }
    return (s - 2.0f) * 1.7320508f;
}

#define CK(x)                                                        \
    do {                                                             \
        if ((x) != QD_OK) {                                          \
            fprintf(stderr, "bench: %s failed at line %d\n", #x, __LINE__); \
            exit(1);                                                 \
        }                                                            \
    } while (0)

static qd_backend_t be;
static double mem_peak_gb;
static void mem_probe(void) {
#ifdef QD_HAVE_CUDA
    size_t fr = 0, tot = 0;
    if (!strcmp(qd_be_name(be), "cuda") && cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
        double used = (double)(tot - fr) / 1e9;
        if (used > mem_peak_gb) mem_peak_gb = used;
    }
#endif
}

static qd_buf_t buf(size_t n) {
    qd_buf_t b;
    CK(qd_buf_alloc(be, n, &b));
    return b;
}
static qd_buf_t rand_buf(size_t rows, size_t cols, float scale, int uneven) {
    float *h = malloc(rows * cols * sizeof *h);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) h[r * cols + c] = scale * frand() * (uneven ? 1.0f + (float)(c % 13) * 0.25f : 1.0f);
    qd_buf_t b = buf(rows * cols);
    CK(qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b, 0), .src = h, .src_dtype = QD_DT_F32, .n = rows * cols}));
    free(h);
    return b;
}

struct layer { const char *name; size_t N, K; int input; };

int main(int argc, char **argv) {
    const char *model = "llama3-8b", *backend = "cuda";
    size_t tokens = 128 * 2048, chunk = 8192, reps = 2;
    int bits = 4, group = 128;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--backend")) backend = argv[i + 1];
        else if (!strcmp(argv[i], "--tokens")) tokens = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--chunk")) chunk = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--reps")) reps = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--bits")) bits = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--group")) group = atoi(argv[i + 1]);
        else { fprintf(stderr, "bench: unknown option %s\n", argv[i]); return 2; }
    }
    const struct shape *sh = NULL;
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (!strcmp(SHAPES[i].name, model)) sh = &SHAPES[i];
    if (!sh) { fprintf(stderr, "bench: unknown model %s\n", model); return 2; }
#ifdef QD_HAVE_CUDA
    if (!strcmp(backend, "cuda")) CK(qd_backend_cuda_create(0, &be));
    else
#endif
        CK(qd_backend_cpu_create(0, &be));
    if (chunk > tokens) chunk = tokens;
    size_t qd = sh->heads * sh->hd, kvd = sh->kv * sh->hd;
    size_t inK[4] = {sh->hidden, qd, sh->hidden, sh->inter};
    const char *inName[4] = {"attn_in", "o_in", "mlp_in", "down_in"};
    struct layer L[7] = {{"q_proj", qd, sh->hidden, 0},        {"k_proj", kvd, sh->hidden, 0},
                         {"v_proj", kvd, sh->hidden, 0},       {"o_proj", sh->hidden, qd, 1},
                         {"gate_proj", sh->inter, sh->hidden, 2}, {"up_proj", sh->inter, sh->hidden, 2},
                         {"down_proj", sh->hidden, sh->inter, 3}};
    const char *math = getenv("QD_CUDA_MATH") ? getenv("QD_CUDA_MATH") : "fp32";
    printf("# bench-gptq-layer: %s shapes, backend %s (math %s), %zu tokens in chunks of %zu, W%d g%d asym, block 128\n",
           sh->name, qd_be_name(be), math, tokens, chunk, bits, group);
    qd_qcfg cfg = {.kind = QD_QZ_MINMAX, .bits = bits, .sym = 0};

    /* warm-up: handles, modules */
    {
        qd_buf_t w = rand_buf(256, 256, 0.02f, 0), x = rand_buf(512, 256, 1, 1), h = buf(256 * 256), c = buf(256 * 256),
                 s = buf(256 * 2), z = buf(256 * 2);
        double loss;
        CK(qd_be_hessian(be, &(struct qd_hessian_args){.H = QD_REF(h, 0), .X = QD_REF(x, 0), .T = 512, .K = 256, .ldx = 256, .alpha = 1.0f / 512, .beta = 0}));
        CK(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(h, 0), .n = 256, .scalar = 0.1f}));
        CK(qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = QD_REF(h, 0), .n = 256}));
        CK(qd_be_gptq_sweep(be, &(struct qd_gptq_sweep_args){.cfg = cfg, .W = QD_REF(w, 0), .U = QD_REF(h, 0), .codes = QD_REF(c, 0), .scales = QD_REF(s, 0),
                                                            .zeros = QD_REF(z, 0), .N = 256, .K = 256, .group_size = 128, .block_size = 128, .loss_out = &loss}));
        CK(qd_be_synchronize(be));
        qd_buf_free(w), qd_buf_free(x), qd_buf_free(h), qd_buf_free(c), qd_buf_free(s), qd_buf_free(z);
    }

    for (size_t rep = 0; rep < reps; rep++) {
        double t_hess = 0, t_prep = 0, t_chol = 0, t_sweep = 0, t_down = 0, t_up = 0;
        double t_block0 = now();
        qd_buf_t H[4];
        for (int in = 0; in < 4; in++) {
            size_t K = inK[in];
            qd_buf_t x = rand_buf(chunk, K, 1.0f, 1);
            H[in] = buf(K * K);
            CK(qd_be_synchronize(be));
            double t0 = now();
            for (size_t t0k = 0; t0k < tokens; t0k += chunk) {
                size_t T = tokens - t0k < chunk ? tokens - t0k : chunk;
                CK(qd_be_hessian(be, &(struct qd_hessian_args){.H = QD_REF(H[in], 0), .X = QD_REF(x, 0), .T = T, .K = K, .ldx = K,
                                                              .alpha = 2.0f / (float)tokens, .beta = t0k ? 1.0f : 0.0f}));
            }
            CK(qd_be_synchronize(be));
            double dt = now() - t0;
            t_hess += dt;
            printf("hessian %-9s K=%-6zu %8.1f ms  (%.1f TFLOP/s as SYRK)\n", inName[in], K, dt * 1e3,
                   (double)K * K * tokens / dt / 1e12);
            qd_buf_free(x);
        }
        mem_probe();
        for (int l = 0; l < 7; l++) {
            size_t N = L[l].N, K = L[l].K, G = group > 0 ? K / (size_t)group : 1;
            double t0 = now();
            qd_buf_t w = rand_buf(N, K, 0.02f, 0);
            CK(qd_be_synchronize(be));
            double tu = now() - t0;
            qd_buf_t u = buf(K * K), diag = buf(K), codes = buf(N * K), sc = buf(G * N), ze = buf(G * N);
            t0 = now();
            CK(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(u, 0), .src = QD_REF(H[L[l].input], 0), .rows = 1, .cols = K * K, .ldd = K * K, .lds = K * K}));
            CK(qd_be_copy(be, &(struct qd_copy_args){.dst = QD_REF(diag, 0), .src = QD_REF(u, 0), .rows = K, .cols = 1, .ldd = 1, .lds = K + 1}));
            float *hd = malloc(K * sizeof *hd);
            CK(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(diag, 0), .dst = hd, .n = K}));
            double mean = 0;
            for (size_t k = 0; k < K; k++) mean += hd[k];
            mean /= (double)K;
            free(hd);
            CK(qd_be_diag_add(be, &(struct qd_diag_add_args){.A = QD_REF(u, 0), .n = K, .scalar = (float)(0.01 * mean)}));
            CK(qd_be_synchronize(be));
            double tp = now() - t0;
            t0 = now();
            CK(qd_be_chol_inv(be, &(struct qd_chol_inv_args){.A = QD_REF(u, 0), .n = K}));
            CK(qd_be_synchronize(be));
            double tc = now() - t0;
            double loss;
            t0 = now();
            CK(qd_be_gptq_sweep(be, &(struct qd_gptq_sweep_args){.cfg = cfg, .W = QD_REF(w, 0), .U = QD_REF(u, 0), .codes = QD_REF(codes, 0), .scales = QD_REF(sc, 0),
                                                                .zeros = QD_REF(ze, 0), .N = N, .K = K, .group_size = (size_t)(group > 0 ? group : 0), .block_size = 128,
                                                                .loss_out = &loss}));
            double ts = now() - t0;
            mem_probe();
            t0 = now();
            int32_t *hc = malloc(N * K * 4);
            float *hs = malloc(G * N * 4);
            CK(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(codes, 0), .dst = hc, .n = N * K}));
            CK(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(sc, 0), .dst = hs, .n = G * N}));
            CK(qd_be_download(be, &(struct qd_download_args){.src = QD_REF(ze, 0), .dst = hs, .n = G * N}));
            double td = now() - t0;
            free(hc), free(hs);
            printf("layer %-9s %6zu x %-6zu gen+upload %7.1f ms  prep %6.1f ms  chol_inv %7.1f ms  sweep %7.1f ms  download %6.1f ms  loss %.4g\n",
                   L[l].name, N, K, tu * 1e3, tp * 1e3, tc * 1e3, ts * 1e3, td * 1e3, loss);
            t_up += tu, t_prep += tp, t_chol += tc, t_sweep += ts, t_down += td;
            qd_buf_free(w), qd_buf_free(u), qd_buf_free(diag), qd_buf_free(codes), qd_buf_free(sc), qd_buf_free(ze);
        }
        for (int in = 0; in < 4; in++) qd_buf_free(H[in]);
        double tb = now() - t_block0;
        printf("BLOCK %s rep %zu backend %s math %s: hessian %.3f s, prep %.3f s, chol_inv %.3f s, sweep %.3f s, "
               "download %.3f s, host gen + upload of W %.3f s; GPU work (hessian+prep+chol+sweep) %.3f s; wall incl. host data gen %.3f s; GPU mem peak %.2f GB\n",
               sh->name, rep, qd_be_name(be), math, t_hess, t_prep, t_chol, t_sweep, t_down, t_up,
               t_hess + t_prep + t_chol + t_sweep, tb, mem_peak_gb);
        fflush(stdout);
    }
    /* forward ops of the same shapes on nseq x 2048 tokens: the projections' GEMM, attention, RMSNorm */
    {
        size_t nseq = 8, T = 2048, rows = nseq * T;
        qd_buf_t x = rand_buf(rows, sh->hidden, 1.0f, 0), wq = rand_buf(qd, sh->hidden, 0.02f, 0), y = buf(rows * qd),
                 kk = rand_buf(rows, kvd, 1.0f, 0), vv = rand_buf(rows, kvd, 1.0f, 0), nw = rand_buf(1, sh->hidden, 1.0f, 0);
        for (int rep = 0; rep < 2; rep++) {
            CK(qd_be_synchronize(be));
            double t0 = now();
            CK(qd_be_gemm(be, &(struct qd_gemm_args){.trans_b = 1, .M = rows, .N = qd, .K = sh->hidden, .alpha = 1, .A = QD_REF(x, 0),
                                                    .B = QD_REF(wq, 0), .C = QD_REF(y, 0), .lda = sh->hidden, .ldb = sh->hidden, .ldc = qd}));
            CK(qd_be_synchronize(be));
            double tg = now() - t0;
            t0 = now();
            CK(qd_be_attention(be, &(struct qd_attention_args){.out = QD_REF(y, 0), .q = QD_REF(y, 0), .k = QD_REF(kk, 0), .v = QD_REF(vv, 0), .nseq = nseq,
                                                              .seq_len = T, .heads = sh->heads, .kv_heads = sh->kv, .head_dim = sh->hd,
                                                              .scale = 1.0f / sqrtf((float)sh->hd)}));
            CK(qd_be_synchronize(be));
            double ta = now() - t0;
            t0 = now();
            CK(qd_be_rmsnorm(be, &(struct qd_rmsnorm_args){.out = QD_REF(x, 0), .x = QD_REF(x, 0), .weight = QD_REF(nw, 0), .rows = rows, .dim = sh->hidden,
                                                          .ld = sh->hidden, .eps = 1e-5f}));
            CK(qd_be_synchronize(be));
            double tr = now() - t0;
            double att_flop = 4.0 * sh->heads * sh->hd * (double)T * (T + 1) / 2 * nseq;
            if (rep)
                printf("FORWARD %s math %s, %zu x %zu tokens: q_proj GEMM %.1f ms (%.1f TFLOP/s), attention %.1f ms (%.1f TFLOP/s causal), "
                       "rmsnorm %.2f ms\n",
                       sh->name, math, nseq, T, tg * 1e3, 2.0 * rows * qd * sh->hidden / tg / 1e12, ta * 1e3, att_flop / ta / 1e12, tr * 1e3);
        }
        mem_probe();
        qd_buf_free(x), qd_buf_free(wq), qd_buf_free(y), qd_buf_free(kk), qd_buf_free(vv), qd_buf_free(nw);
    }
    qd_be_free(be);
    return 0;
}
