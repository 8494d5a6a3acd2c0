/* SPDX-License-Identifier: MIT
 * test-forward.c - the model forward (src/forward over the CPU backend) against a naive
 * double-precision implementation written here from docs/reference/algorithms.md section 3: on stories260K (a real
 * Llama) and on tiny random Qwen2 (q/k/v bias), Qwen3 (q/k norm) and Llama-3 (llama3 rope scaling,
 * bf16 storage) models written by the test. Two sequences per run check per-sequence positions. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qd-backend-cpu.h"
#include "qd-fs.h"
#include "qd-lm.h"
#include "qd-model-ckpt.h"
#include "qd-log.h"
#include "qd-st-writer.h"
#include "qd-test.h"

static qd_backend_t be;

static double *tensor(const qd_checkpoint *ck, const char *name) {
    const qd_st_tensor *t = qd_ckpt_find(ck, name);
    if (!t) return NULL;
    float *f = malloc(t->numel * sizeof *f);
    double *d = malloc(t->numel * sizeof *d);
    qd_ckpt_read_f32(ck, t, f);
    for (uint64_t i = 0; i < t->numel; i++) d[i] = f[i];
    free(f);
    return d;
}
static double *block_tensor(const qd_checkpoint *ck, int b, const char *name) {
    char full[256];
    snprintf(full, sizeof full, "model.layers.%d.%s", b, name);
    return tensor(ck, full);
}

static void rmsnorm(const double *x, const double *w, double *out, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * inv * (w ? w[i] : 1);
}
/* y[N] = W[N][K] x + b */
static void linear(const double *W, const double *b, const double *x, double *y, int N, int K) {
    for (int n = 0; n < N; n++) {
        double s = b ? b[n] : 0;
        for (int k = 0; k < K; k++) s += W[(size_t)n * K + k] * x[k];
        y[n] = s;
    }
}

/* inverse frequencies written from the transformers formulas, in double */
static void inv_freqs(const qd_model_cfg *c, double *inv) {
    int d = c->head_dim;
    for (int i = 0; i < d / 2; i++) {
        double f = 1.0 / pow(c->rope.theta, 2.0 * i / d);
        if (c->rope.type == QD_ROPE_LLAMA3) {
            double orig = c->rope.original_max_pos, lo = c->rope.low_freq_factor, hi = c->rope.high_freq_factor;
            double wl = 2 * M_PI / f;
            if (wl < orig / hi) {
            } else if (wl > orig / lo) {
                f /= c->rope.factor;
            } else {
                double s = (orig / wl - lo) / (hi - lo);
                f = (1 - s) * f / c->rope.factor + s * f;
            }
        }
        inv[i] = f;
    }
}

static void rope(double *x, int heads, int hd, int pos, const double *inv) {
    for (int h = 0; h < heads; h++) {
        double *v = x + h * hd;
        for (int i = 0; i < hd / 2; i++) {
            double a = pos * inv[i], c = cos(a), s = sin(a), x1 = v[i], x2 = v[i + hd / 2];
            v[i] = x1 * c - x2 * s;
            v[i + hd / 2] = x2 * c + x1 * s;
        }
    }
}

/* logits [T][V] of one sequence */
static void naive_logits(const qd_model_cfg *c, const qd_checkpoint *ck, const int32_t *ids, int T, double *logits) {
    int H = c->hidden, I = c->intermediate, hd = c->head_dim, nh = c->nheads, nkv = c->nkv, V = c->vocab;
    double *emb = tensor(ck, "model.embed_tokens.weight");
    double *x = malloc(sizeof *x * T * H), *n = malloc(sizeof *n * H);
    double *q = malloc(sizeof *q * T * nh * hd), *k = malloc(sizeof *k * T * nkv * hd), *v = malloc(sizeof *v * T * nkv * hd);
    double *att = malloc(sizeof *att * nh * hd), *o = malloc(sizeof *o * H), *g = malloc(sizeof *g * I), *u = malloc(sizeof *u * I);
    double *sc = malloc(sizeof *sc * T), inv[256];
    inv_freqs(c, inv);
    for (int t = 0; t < T; t++) memcpy(x + t * H, emb + (size_t)ids[t] * H, sizeof *x * H);
    for (int b = 0; b < c->nlayers; b++) {
        double *ln1 = block_tensor(ck, b, "input_layernorm.weight"), *ln2 = block_tensor(ck, b, "post_attention_layernorm.weight");
        double *Wq = block_tensor(ck, b, "self_attn.q_proj.weight"), *Wk = block_tensor(ck, b, "self_attn.k_proj.weight");
        double *Wv = block_tensor(ck, b, "self_attn.v_proj.weight"), *Wo = block_tensor(ck, b, "self_attn.o_proj.weight");
        double *bq = block_tensor(ck, b, "self_attn.q_proj.bias"), *bk = block_tensor(ck, b, "self_attn.k_proj.bias");
        double *bv = block_tensor(ck, b, "self_attn.v_proj.bias");
        double *qn = block_tensor(ck, b, "self_attn.q_norm.weight"), *kn = block_tensor(ck, b, "self_attn.k_norm.weight");
        double *Wg = block_tensor(ck, b, "mlp.gate_proj.weight"), *Wu = block_tensor(ck, b, "mlp.up_proj.weight");
        double *Wd = block_tensor(ck, b, "mlp.down_proj.weight");
        for (int t = 0; t < T; t++) {
            rmsnorm(x + t * H, ln1, n, H, c->rms_eps);
            linear(Wq, bq, n, q + t * nh * hd, nh * hd, H);
            linear(Wk, bk, n, k + t * nkv * hd, nkv * hd, H);
            linear(Wv, bv, n, v + t * nkv * hd, nkv * hd, H);
            if (qn) {
                for (int h = 0; h < nh; h++) rmsnorm(q + (t * nh + h) * hd, qn, q + (t * nh + h) * hd, hd, c->rms_eps);
                for (int h = 0; h < nkv; h++) rmsnorm(k + (t * nkv + h) * hd, kn, k + (t * nkv + h) * hd, hd, c->rms_eps);
            }
            rope(q + t * nh * hd, nh, hd, t, inv);
            rope(k + t * nkv * hd, nkv, hd, t, inv);
        }
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < nh; h++) {
                int kh = h / (nh / nkv);
                double m = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += q[(t * nh + h) * hd + i] * k[(j * nkv + kh) * hd + i];
                    sc[j] = d / sqrt(hd);
                    m = fmax(m, sc[j]);
                }
                for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - m));
                for (int i = 0; i < hd; i++) {
                    double a = 0;
                    for (int j = 0; j <= t; j++) a += sc[j] / sum * v[(j * nkv + kh) * hd + i];
                    att[h * hd + i] = a;
                }
            }
            linear(Wo, NULL, att, o, H, nh * hd);
            for (int i = 0; i < H; i++) x[t * H + i] += o[i];
            rmsnorm(x + t * H, ln2, n, H, c->rms_eps);
            linear(Wg, NULL, n, g, I, H);
            linear(Wu, NULL, n, u, I, H);
            for (int i = 0; i < I; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            linear(Wd, NULL, g, o, H, I);
            for (int i = 0; i < H; i++) x[t * H + i] += o[i];
        }
        free(ln1), free(ln2), free(Wq), free(Wk), free(Wv), free(Wo), free(bq), free(bk), free(bv), free(qn), free(kn);
        free(Wg), free(Wu), free(Wd);
    }
    double *fn = tensor(ck, "model.norm.weight"), *head = tensor(ck, "lm_head.weight");
    if (!head) head = emb, emb = NULL;
    for (int t = 0; t < T; t++) {
        rmsnorm(x + t * H, fn, n, H, c->rms_eps);
        linear(head, NULL, n, logits + (size_t)t * V, V, H);
    }
    free(fn), free(head), free(emb), free(x), free(n), free(q), free(k), free(v), free(att), free(o), free(g), free(u), free(sc);
}

static void compare_model(const char *dir, int T) {
    qd_model *m;
    qd_lm *lm;
    if (qd_model_open(dir, 1, &m) != QD_OK) {
        QD_EXPECT(!"qd_model_open failed");
        return;
    }
    if (qd_lm_open(be, m, (size_t)T, 2, &lm) != QD_OK) {
        QD_EXPECT(!"qd_lm_open failed");
        qd_model_close(m);
        return;
    }
    int V = lm->cfg.vocab;
    int32_t *ids = malloc(sizeof *ids * 2 * T);
    for (int i = 0; i < 2 * T; i++) ids[i] = (int32_t)((i * 7919u + 13u) % (unsigned)V);
    QD_EXPECT_EQ_INT(qd_lm_forward(lm, ids, 2), QD_OK);
    qd_buf_t lg;
    qd_buf_alloc(be, (size_t)2 * T * V, &lg);
    QD_EXPECT_EQ_INT(qd_lm_logits(lm, 0, (size_t)2 * T, QD_REF(lg, 0)), QD_OK);
    float *got = malloc(sizeof *got * 2 * T * V);
    qd_be_download(be, &(struct qd_download_args){.src = QD_REF(lg, 0), .dst = got, .n = (size_t)2 * T * V});
    double *ref = malloc(sizeof *ref * T * V);
    for (int s = 0; s < 2; s++) {
        naive_logits(&lm->cfg, qd_model_ckpt(lm->model), ids + s * T, T, ref);
        double num = 0, den = 0;
        for (size_t i = 0; i < (size_t)T * V; i++) {
            num = fmax(num, fabs(got[(size_t)s * T * V + i] - ref[i]));
            den = fmax(den, fabs(ref[i]));
        }
        fprintf(stderr, "%s seq %d: max |diff| / max |ref| = %.3g\n", dir, s, num / den);
        QD_EXPECT(num / den < 1e-4);
    }
    free(ids), free(got), free(ref);
    qd_buf_free(lg);
    qd_lm_close(lm);
    qd_model_close(m);
}

static void test_stories(void) {
    char p[4096];
    if (!qd_fixture(p, sizeof p, "stories260K-hf/model.safetensors")) return;
    p[strlen(p) - strlen("/model.safetensors")] = 0;
    compare_model(p, 40);
}

/* ---- tiny synthetic models of the other architectures ---- */
static uint64_t rs = 12345;
static float rnd(void) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rs >> 11) / 9007199254740992.0 * 2 - 1);
}

static void add(qd_stw *w, const char *name, qd_dtype dt, int64_t d0, int64_t d1, float base) {
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = base + 0.3f * rnd();
    void *buf = malloc(n * 4);
    qd_from_f32(dt, f, buf, n);
    int64_t shape[2] = {d0, d1};
    qd_stw_add(w, name, dt, d1 ? 2 : 1, shape, buf, n * qd_dtype_bits(dt) / 8);
    free(f), free(buf);
}

static void write_model(const char *dir, const char *config, int qk_norm, int bias, int tie, qd_dtype dt) {
    int H = 32, I = 48, nh = 4, nkv = 2, hd = 16, V = 64, L = 2;
    qd_mkdir_p(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    qd_write_file_atomic(path, config, strlen(config));
    qd_stw *w;
    qd_stw_open(dir, "model", QD_DEFAULT_MAX_SHARD_BYTES, &w);
    add(w, "model.embed_tokens.weight", dt, V, H, 0);
    char name[256];
    for (int b = 0; b < L; b++) {
#define T2(s, a, c) (snprintf(name, sizeof name, "model.layers.%d.%s", b, s), add(w, name, dt, a, c, 0))
#define T1(s, a, base) (snprintf(name, sizeof name, "model.layers.%d.%s", b, s), add(w, name, dt, a, 0, base))
        T1("input_layernorm.weight", H, 1);
        T1("post_attention_layernorm.weight", H, 1);
        T2("self_attn.q_proj.weight", nh * hd, H);
        T2("self_attn.k_proj.weight", nkv * hd, H);
        T2("self_attn.v_proj.weight", nkv * hd, H);
        T2("self_attn.o_proj.weight", H, nh * hd);
        if (bias) {
            T1("self_attn.q_proj.bias", nh * hd, 0);
            T1("self_attn.k_proj.bias", nkv * hd, 0);
            T1("self_attn.v_proj.bias", nkv * hd, 0);
        }
        if (qk_norm) {
            T1("self_attn.q_norm.weight", hd, 1);
            T1("self_attn.k_norm.weight", hd, 1);
        }
        T2("mlp.gate_proj.weight", I, H);
        T2("mlp.up_proj.weight", I, H);
        T2("mlp.down_proj.weight", H, I);
    }
    add(w, "model.norm.weight", dt, H, 0, 1);
    if (!tie) add(w, "lm_head.weight", dt, V, H, 0);
    qd_stw_finish(w);
}

#define CFG_COMMON "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":2,\"num_attention_heads\":4," \
                   "\"num_key_value_heads\":2,\"head_dim\":16,\"vocab_size\":64,\"max_position_embeddings\":4096," \
                   "\"rms_norm_eps\":1e-6,"

static void test_synthetic(void) {
    char base[] = "/tmp/qd-test-forward-XXXXXX";
    if (!mkdtemp(base)) return;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/qwen2", base);
    write_model(dir, "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\"," CFG_COMMON
                     "\"rope_theta\":1000000.0,\"tie_word_embeddings\":false,\"torch_dtype\":\"float32\"}",
                0, 1, 0, QD_DT_F32);
    compare_model(dir, 20);
    snprintf(dir, sizeof dir, "%s/qwen3", base);
    write_model(dir, "{\"architectures\":[\"Qwen3ForCausalLM\"],\"model_type\":\"qwen3\"," CFG_COMMON
                     "\"rope_theta\":1000000.0,\"attention_bias\":false,\"tie_word_embeddings\":true,\"torch_dtype\":\"float32\"}",
                1, 0, 1, QD_DT_F32);
    compare_model(dir, 20);
    snprintf(dir, sizeof dir, "%s/llama3", base);
    write_model(dir, "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\"," CFG_COMMON
                     "\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
                     "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":64},"
                     "\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\"}",
                0, 0, 1, QD_DT_BF16);
    compare_model(dir, 200);
    qd_rm_rf(base);
}

int main(void) {
    if (qd_backend_cpu_create(0, &be) != QD_OK) return 1;
    QD_RUN(test_stories);
    QD_RUN(test_synthetic);
    qd_be_free(be);
    return QD_TEST_END();
}
