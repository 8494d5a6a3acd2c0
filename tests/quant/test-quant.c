/* SPDX-License-Identifier: MIT
 * test-quant.c - RTN / GPTQ per Linear and the whole-model driver on the CPU backend:
 * GPTQ with H = c I equals RTN; GPTQ beats RTN's output error on correlated inputs (plain, act-order,
 * static groups, small groups); dead columns; a non-PD Hessian falls back to RTN and says so; bad group
 * sizes and NaN weights are refused naming the module; recipes resolve with the documented precedence;
 * on stories260K the fake-quant output holds weights equal to the F16-scale dequantisation of its codes,
 * a report entry per module, and the resident and re-forward GPTQ paths give identical codes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "qd-backend-cpu.h"
#include "qd-fs.h"
#include "qd-log.h"
#include "qd-quantize-run.h"
#include "qd-safetensors.h"
#include "qd-test.h"

static qd_backend_t be;
static uint64_t rs;
static double urand(void) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rs >> 11) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(2 * M_PI * urand())); }

static qd_buf_t up(const float *src, size_t n) {
    qd_buf_t b;
    if (qd_buf_alloc(be, n, &b) != QD_OK) exit(1);
    if (src) qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(b, 0), .src = src, .src_dtype = QD_DT_F32, .n = n});
    return b;
}
static void down(qd_buf_t b, float *dst, size_t n) {
    qd_be_download(be, &(struct qd_download_args){.src = QD_REF(b, 0), .dst = dst, .n = n});
}

/* H = (2/T) X^T X on the device */
static qd_buf_t hessian(const float *X, size_t T, size_t K) {
    qd_buf_t bx = up(X, T * K), bh = up(NULL, K * K);
    qd_be_hessian(be, &(struct qd_hessian_args){.H = QD_REF(bh, 0), .X = QD_REF(bx, 0), .T = T, .K = K, .ldx = K,
                                                .alpha = (float)(2.0 / T), .beta = 0});
    qd_buf_free(bx);
    return bh;
}

static qd_qspec spec(int bits, int gs, int sym) {
    return (qd_qspec){.method = QD_METHOD_GPTQ, .bits = bits, .group_size = gs, .sym = sym, .damp = 0.01};
}

static void test_identity_is_rtn(void) {
    size_t N = 8, K = 128;
    float *W = malloc(N * K * 4), *I2 = calloc(K * K, 4);
    for (size_t i = 0; i < N * K; i++) W[i] = nrand();
    for (size_t k = 0; k < K; k++) I2[k * K + k] = 2.0f;
    qd_qspec s = spec(4, 32, 0);
    s.damp = 0;
    s.act_order = 1; /* equal diagonal: the stable order is the identity */
    qd_buf_t bW = up(W, N * K), bH = up(I2, K * K), bR = up(W, N * K);
    qd_qresult g = {0}, r = {0};
    QD_EXPECT_EQ_INT(qd_gptq_layer(be, "t.identity", &s, bW, N, K, bH, &g), QD_OK);
    QD_EXPECT_EQ_INT(qd_rtn_layer(be, "t.identity", &s, bR, N, K, &r), QD_OK);
    QD_EXPECT(memcmp(g.q.codes, r.q.codes, N * K) == 0);
    QD_EXPECT(memcmp(g.q.scales, r.q.scales, 4 * 4 * N) == 0);
    QD_EXPECT(memcmp(g.q.g_idx, r.q.g_idx, 4 * K) == 0);
    /* d^2 = 1/2: GPTQ's loss is twice RTN's sum (w-q)^2/2 */
    QD_EXPECT_NEAR(g.s.loss, 2 * r.s.loss, 1e-5 * r.s.loss);
    qd_qresult_free(&g), qd_qresult_free(&r);
    qd_buf_free(bW), qd_buf_free(bH), qd_buf_free(bR);
    free(W), free(I2);
}

/* ||(W - Wq) X^T||^2 */
static double out_err(const float *W, const float *Q, const float *X, size_t N, size_t K, size_t T) {
    double e = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t t = 0; t < T; t++) {
            double a = 0;
            for (size_t k = 0; k < K; k++) a += ((double)W[n * K + k] - Q[n * K + k]) * X[t * K + k];
            e += a * a;
        }
    return e;
}

static void test_beats_rtn(void) {
    size_t N = 24, K = 256, T = 400;
    float *W = malloc(N * K * 4), *X = malloc(T * K * 4), *Q = malloc(N * K * 4), *R = malloc(N * K * 4);
    for (size_t i = 0; i < N * K; i++) W[i] = nrand();
    /* correlated inputs with unequal column scales (act-order has something to sort) */
    for (size_t t = 0; t < T; t++) {
        float z = nrand();
        for (size_t k = 0; k < K; k++) X[t * K + k] = (0.5f * z + nrand()) * (1.0f + (float)(k % 7));
    }
    struct { int bits, gs, sym, act, stat; } cases[] = {{4, 128, 1, 0, 0}, {3, 32, 0, 0, 0}, {4, 64, 1, 1, 0},
                                                       {3, 32, 0, 1, 1}, {2, -1, 0, 1, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        qd_qspec s = spec(cases[c].bits, cases[c].gs, cases[c].sym);
        s.act_order = cases[c].act, s.static_groups = cases[c].stat;
        qd_buf_t bW = up(W, N * K), bR = up(W, N * K), bH = hessian(X, T, K);
        qd_qresult g = {0}, r = {0};
        QD_EXPECT_EQ_INT(qd_gptq_layer(be, "t.beats", &s, bW, N, K, bH, &g), QD_OK);
        QD_EXPECT_EQ_INT(qd_rtn_layer(be, "t.beats", &s, bR, N, K, &r), QD_OK);
        down(bW, Q, N * K), down(bR, R, N * K);
        double eg = out_err(W, Q, X, N, K, T), er = out_err(W, R, X, N, K, T);
        fprintf(stderr, "w%d g%d sym %d act %d static %d: gptq %.4g rtn %.4g\n", cases[c].bits, cases[c].gs,
                cases[c].sym, cases[c].act, cases[c].stat, eg, er);
        QD_EXPECT(eg < 0.9 * er);
        /* the device weight is the fp32-scale dequantisation of the codes, in the original order */
        float *D = malloc(N * K * 4);
        qd_qlinear_dequant(&g.q, D);
        int same = 1;
        for (size_t i = 0; i < N * K; i++) same &= D[i] == Q[i];
        QD_EXPECT(same);
        if (cases[c].act && !cases[c].stat && cases[c].gs > 0) QD_EXPECT(!qd_qlinear_g_idx_sequential(&g.q));
        if (cases[c].stat) QD_EXPECT(qd_qlinear_g_idx_sequential(&g.q));
        free(D);
        qd_qresult_free(&g), qd_qresult_free(&r);
        qd_buf_free(bW), qd_buf_free(bR), qd_buf_free(bH);
    }
    free(W), free(X), free(Q), free(R);
}

static void test_dead_and_fallback(void) {
    size_t N = 4, K = 64, T = 100;
    float *W = malloc(N * K * 4), *X = malloc(T * K * 4), *Q = malloc(N * K * 4);
    for (size_t i = 0; i < N * K; i++) W[i] = nrand();
    for (size_t i = 0; i < T * K; i++) X[i] = i % K == 5 ? 0.0f : nrand();
    qd_qspec s = spec(4, 32, 1);
    qd_buf_t bW = up(W, N * K), bH = hessian(X, T, K);
    qd_qresult g = {0};
    QD_EXPECT_EQ_INT(qd_gptq_layer(be, "t.dead", &s, bW, N, K, bH, &g), QD_OK);
    down(bW, Q, N * K);
    for (size_t n = 0; n < N; n++) QD_EXPECT(Q[n * K + 5] == 0.0f);
    QD_EXPECT(g.s.fallback[0] == 0 && g.s.damp == 0.01);
    qd_qresult_free(&g);
    /* indefinite beyond any damping: pairs [[1, 10], [10, 1]] on the diagonal */
    float *Hb = calloc(K * K, 4);
    for (size_t k = 0; k < K; k += 2) {
        Hb[k * K + k] = Hb[(k + 1) * K + k + 1] = 1;
        Hb[k * K + k + 1] = Hb[(k + 1) * K + k] = 10;
    }
    qd_buf_t bH2 = up(Hb, K * K), bW2 = up(W, N * K), bR = up(W, N * K);
    qd_qresult r = {0};
    qd_clear_error();
    QD_EXPECT_EQ_INT(qd_gptq_layer(be, "t.indefinite", &s, bW2, N, K, bH2, &g), QD_OK);
    QD_EXPECT_STR_CONTAINS(g.s.fallback, "RTN");
    QD_EXPECT(g.s.damp < 0);
    QD_EXPECT_EQ_INT(qd_rtn_layer(be, "t.indefinite", &s, bR, N, K, &r), QD_OK);
    QD_EXPECT(memcmp(g.q.codes, r.q.codes, N * K) == 0);
    qd_qresult_free(&g), qd_qresult_free(&r);
    qd_buf_free(bW), qd_buf_free(bH), qd_buf_free(bH2), qd_buf_free(bW2), qd_buf_free(bR);
    free(W), free(X), free(Q), free(Hb);
}

static void test_refusals(void) {
    size_t N = 4, K = 100;
    float *W = calloc(N * K, 4);
    qd_buf_t bW = up(W, N * K), bH = up(NULL, K * K);
    qd_qspec s = spec(4, 32, 1);
    qd_qresult g = {0};
    qd_clear_error();
    QD_EXPECT_EQ_INT(qd_gptq_layer(be, "model.layers.3.mlp.down_proj", &s, bW, N, K, bH, &g), QD_ERR_UNSUPPORTED);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "model.layers.3.mlp.down_proj");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "32");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "100");
    W[7] = NAN;
    qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bW, 0), .src = W, .src_dtype = QD_DT_F32, .n = N * K});
    s.group_size = -1;
    qd_clear_error();
    QD_EXPECT_EQ_INT(qd_rtn_layer(be, "model.layers.2.self_attn.o_proj", &s, bW, N, K, &g), QD_ERR_NUMERIC);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "model.layers.2.self_attn.o_proj");
    /* a damp outside [0, 1) (the command line and recipes refuse it) is refused here too: a negative one
     * used to double towards 1 forever */
    W[7] = 0;
    qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(bW, 0), .src = W, .src_dtype = QD_DT_F32, .n = N * K});
    const double bad_damp[] = {-1, -0.015, 1, 5, NAN};
    for (size_t i = 0; i < sizeof bad_damp / sizeof *bad_damp; i++) {
        s.damp = bad_damp[i];
        qd_clear_error();
        QD_EXPECT_EQ_INT(qd_gptq_layer(be, "model.layers.1.mlp.up_proj", &s, bW, N, K, bH, &g), QD_ERR_USAGE);
        QD_EXPECT_STR_CONTAINS(qd_last_error(), "model.layers.1.mlp.up_proj");
    }
    qd_clear_error();
    qd_buf_free(bW), qd_buf_free(bH);
    free(W);
}

static void test_recipe(void) {
    char path[] = "/tmp/qd-test-recipe-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "{\"method\": \"gptq\", \"bits\": 3, \"group_size\": 64, \"true_sequential\": false,"
                       " \"calibration\": {\"nsamples\": 16, \"seqlen\": 256},"
                       " \"overrides\": [{\"match\": \"mlp\\\\.down_proj$\", \"bits\": 8},"
                       "               {\"match\": \"layers\\\\.0\\\\.\", \"skip\": true}]}";
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) return;
    close(fd);
    qd_recipe *r;
    QD_EXPECT_EQ_INT(qd_recipe_load(path, &r), QD_OK);
    qd_qspec base = {.method = QD_METHOD_RTN, .bits = 4, .group_size = 128, .sym = 1, .damp = 0.01}, s;
    qd_recipe_run run = {.true_sequential = 1, .nsamples = 128};
    qd_recipe_apply_base(r, &base, &run);
    QD_EXPECT(base.method == QD_METHOD_GPTQ && base.bits == 3 && base.group_size == 64 && base.sym == 1);
    QD_EXPECT(run.true_sequential == 0 && run.nsamples == 16 && run.seqlen == 256);
    qd_recipe_resolve(r, &base, "model.layers.5.mlp.down_proj", &s);
    QD_EXPECT(s.bits == 8 && !s.skip && s.group_size == 64);
    qd_recipe_resolve(r, &base, "model.layers.5.mlp.up_proj", &s);
    QD_EXPECT(s.bits == 3 && !s.skip);
    qd_recipe_resolve(r, &base, "model.layers.0.mlp.down_proj", &s);
    QD_EXPECT(s.bits == 8 && s.skip);
    qd_recipe_free(r);
    const char *bad = "{\"bits\": 4, \"groupsize\": 128}";
    fd = open(path, O_WRONLY | O_TRUNC);
    if (fd >= 0 && write(fd, bad, strlen(bad)) == (ssize_t)strlen(bad)) {
        close(fd);
        qd_clear_error();
        QD_EXPECT_EQ_INT(qd_recipe_load(path, &r), QD_ERR_FORMAT);
        QD_EXPECT_STR_CONTAINS(qd_last_error(), "groupsize");
        qd_clear_error();
    }
    unlink(path);
}

/* quantize stories260K (4 x 64 calibration tokens) into dir as a fake-quant model, through the run
 * every format goes through (one rank: no MPI start-up needed) */
static qd_status run_model(const char *model, const char *dir, qd_method m, size_t resident_max) {
    static int32_t ids[4 * 64];
    for (size_t i = 0; i < 4 * 64; i++) ids[i] = (int32_t)(1 + (i * 7919u) % 500u);
    qd_run_opts o = {
        .model_dir = model, .output_dir = dir, .format = "fake", .overwrite = 1, .calib_ids = ids,
        .calib_mode = "test", .backend = {.kind = QD_BACKEND_CPU, .device = QD_DEVICE_ANY},
        .progress = QD_PROGRESS_QUIET,
        .q = {.base = {.method = m, .bits = 4, .group_size = -1, .sym = m != QD_METHOD_AWQ, .damp = 0.01},
              .true_sequential = 1, .nseq = 4, .seq_len = 64, .scale_dtype = QD_DT_F16,
              .resident_max_bytes = resident_max}};
    return qd_quantize_run(&o);
}

static void test_model(void) {
    char p[4096];
    if (!qd_fixture(p, sizeof p, "stories260K-hf/model.safetensors")) return;
    p[strlen(p) - strlen("/model.safetensors")] = 0;
    char base[] = "/tmp/qd-test-quant-XXXXXX";
    if (!mkdtemp(base)) return;
    char d1[512], d2[512], d3[512];
    snprintf(d1, sizeof d1, "%s/resident", base);
    snprintf(d2, sizeof d2, "%s/reforward", base);
    snprintf(d3, sizeof d3, "%s/awq", base);
    QD_EXPECT_EQ_INT(run_model(p, d1, QD_METHOD_GPTQ, 0), QD_OK);
    QD_EXPECT_EQ_INT(run_model(p, d2, QD_METHOD_GPTQ, 1), QD_OK);
    QD_EXPECT_EQ_INT(run_model(p, d3, QD_METHOD_AWQ, 0), QD_OK);
    qd_checkpoint *a = NULL, *b = NULL;
    QD_EXPECT_EQ_INT(qd_ckpt_open(d1, 1, &a), QD_OK);
    QD_EXPECT_EQ_INT(qd_ckpt_open(d2, 1, &b), QD_OK);
    int nq = 0, bad = 0;
    for (size_t i = 0; a && b && i < a->ntensors; i++) {
        const qd_st_tensor *t = a->tensors[i];
        size_t L = strlen(t->name);
        if (L < 9 || strcmp(t->name + L - 9, ".qd_codes") != 0) continue;
        nq++;
        const qd_st_tensor *t2 = qd_ckpt_find(b, t->name);
        bad += !t2 || memcmp(qd_ckpt_data(a, t), qd_ckpt_data(b, t2), (size_t)t->nbytes) != 0;
        /* weight == (code - zero) * f16(scale) */
        char prefix[256], name[300];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(L - 9), t->name);
        qd_qlinear l = {0};
        l.N = (int)t->shape[0], l.K = (int)t->shape[1], l.G = 1;
        l.codes = (uint8_t *)qd_ckpt_data(a, t);
        snprintf(name, sizeof name, "%s.qd_scales", prefix);
        const qd_st_tensor *ts = qd_ckpt_find(a, name);
        snprintf(name, sizeof name, "%s.qd_zeros", prefix);
        const qd_st_tensor *tz = qd_ckpt_find(a, name);
        snprintf(name, sizeof name, "%s.qd_g_idx", prefix);
        const qd_st_tensor *tg = qd_ckpt_find(a, name);
        snprintf(name, sizeof name, "%s.weight", prefix);
        const qd_st_tensor *tw = qd_ckpt_find(a, name);
        if (!ts || !tz || !tg || !tw || tw->dtype != QD_DT_F32) {
            bad++;
            continue;
        }
        float *sc = malloc(ts->nbytes), *w = malloc(tw->nbytes), *d = malloc(tw->nbytes);
        int32_t *z = malloc(tz->nbytes), *g = malloc(tg->nbytes);
        qd_ckpt_read_raw(a, ts, sc), qd_ckpt_read_raw(a, tz, z), qd_ckpt_read_raw(a, tg, g), qd_ckpt_read_raw(a, tw, w);
        l.scales = sc, l.zeros = z, l.g_idx = g;
        qd_qlinear_dequant_rounded(&l, QD_DT_F16, d);
        bad += memcmp(w, d, tw->nbytes) != 0;
        free(sc), free(w), free(d), free(z), free(g);
    }
    QD_EXPECT_EQ_INT(nq, 35);
    QD_EXPECT_EQ_INT(bad, 0);
    qd_ckpt_close(a), qd_ckpt_close(b);
    /* the report lists every module with its loss and damp */
    char rp[600], *text = NULL;
    size_t len;
    snprintf(rp, sizeof rp, "%s/qdist_report.json", d1);
    QD_EXPECT_EQ_INT(qd_read_file(rp, 1 << 24, &text, &len), QD_OK);
    QD_EXPECT_STR_CONTAINS(text, "\"model.layers.4.mlp.down_proj\"");
    QD_EXPECT_STR_CONTAINS(text, "\"damp\":\t0.01");
    QD_EXPECT_STR_CONTAINS(text, "\"quantized\":\t35");
    free(text);
    /* AWQ rescales the norms: the output's input_layernorm differs from the source's */
    qd_checkpoint *src = NULL, *aw = NULL;
    if (qd_ckpt_open(p, 1, &src) == QD_OK && qd_ckpt_open(d3, 1, &aw) == QD_OK) {
        const qd_st_tensor *s0 = qd_ckpt_find(src, "model.layers.0.input_layernorm.weight");
        const qd_st_tensor *s1 = qd_ckpt_find(aw, "model.layers.0.input_layernorm.weight");
        QD_EXPECT(s0 && s1 && memcmp(qd_ckpt_data(src, s0), qd_ckpt_data(aw, s1), (size_t)s0->nbytes) != 0);
    }
    qd_ckpt_close(src), qd_ckpt_close(aw);
    qd_rm_rf(base);
}

int main(void) {
    const char *seed = getenv("QD_TEST_SEED");
    rs = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "seed %llu (QD_TEST_SEED replays it)\n", (unsigned long long)rs);
    qd_log_set_level(QD_LOG_WARN);
    if (qd_backend_cpu_create(0, &be) != QD_OK) return 1;
    QD_RUN(test_identity_is_rtn);
    QD_RUN(test_beats_rtn);
    QD_RUN(test_dead_and_fallback);
    QD_RUN(test_refusals);
    QD_RUN(test_recipe);
    QD_RUN(test_model);
    qd_be_free(be);
    return QD_TEST_END();
}
