/* SPDX-License-Identifier: MIT
 * test-qformat-read.c - the dequantise-on-load reader.
 *
 * Without arguments: writes small GPTQ v1 / AWQ / compressed-tensors checkpoints with the packers and
 * the atomic writer, reads them back through qd_qformat_read_linear and compares with
 * (code - zero) * scale. With arguments DIR PREFIX OUT: dumps the fp32 weight of Linear PREFIX of the
 * checkpoint DIR to the raw file OUT ([N][K] little-endian float32) - tests/py/test_export_reader.py
 * uses this to read checkpoints written by compressed-tensors itself. */
#include <stdint.h>
#include <stdio.h>

#include "qd-dtype.h"
#include "qd-fs.h"
#include "qd-qformat-awq.h"
#include "qd-qformat-ct.h"
#include "qd-qformat-gptq.h"
#include "qd-qformat-read.h"
#include "qd-st-writer.h"
#include "qd-test.h"
#include "qd-vllm-rules.h"

enum { N = 64, K = 128, GS = 32, G = K / GS };

static uint8_t codes[N * K];
static int32_t zeros[G * N];
static float scales[G * N], want[N * K];

static uint32_t rng = 7;
static uint32_t rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

static void make_layer(void) {
    for (int i = 0; i < N * K; i++) codes[i] = (uint8_t)(rnd() % 16);
    for (int i = 0; i < G * N; i++) {
        zeros[i] = 1 + (int32_t)(rnd() % 15);
        scales[i] = qd_f16_to_f32(qd_f32_to_f16(0.001f * (float)(1 + rnd() % 100)));
    }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            want[n * K + k] = (float)((int)codes[n * K + k] - zeros[(k / GS) * N + n]) * scales[(k / GS) * N + n];
}

static int write_ckpt(const char *dir, const char *qcfg, int fmt) {
    qd_rm_rf(dir);
    qd_mkdir_p(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "{\"architectures\":[\"LlamaForCausalLM\"],\"quantization_config\":%s}", qcfg);
    if (qd_write_file_atomic(path, cfg, strlen(cfg)) != QD_OK) return 0;
    qd_stw *w;
    if (qd_stw_open(dir, "model", QD_DEFAULT_MAX_SHARD_BYTES, &w) != QD_OK) return 0;
    static int32_t a[N * K], b[N * K];
    static uint16_t s16[G * N];
    static float sT[G * N];
    int32_t g_idx[K];
    for (int k = 0; k < K; k++) g_idx[k] = k / GS;
    const char *p = "m.l";
    int ok = 1;
    char nm[64];
#define ADD(suffix, dt, nd, shp, data, bytes)                                               \
    do {                                                                                   \
        snprintf(nm, sizeof nm, "%s%s", p, suffix);                                        \
        ok &= qd_stw_add(w, nm, dt, nd, shp, data, bytes) == QD_OK;                        \
    } while (0)
    if (fmt == 0) { /* GPTQ v1 */
        int64_t sw[2] = {K / 8, N}, sz[2] = {G, N / 8}, ss[2] = {G, N}, sg[1] = {K};
        ok &= qd_pack_gptq_qweight(codes, N, K, 4, a) == QD_OK;
        ok &= qd_pack_gptq_qzeros(zeros, G, N, 4, 1, b) == QD_OK;
        qd_from_f32(QD_DT_F16, scales, s16, G * N);
        ADD(".qweight", QD_DT_I32, 2, sw, a, K / 8 * N * 4);
        ADD(".qzeros", QD_DT_I32, 2, sz, b, G * N / 8 * 4);
        ADD(".scales", QD_DT_F16, 2, ss, s16, G * N * 2);
        ADD(".g_idx", QD_DT_I32, 1, sg, g_idx, K * 4);
    } else if (fmt == 1) { /* AWQ */
        int64_t sw[2] = {K, N / 8}, sz[2] = {G, N / 8}, ss[2] = {G, N};
        ok &= qd_pack_awq_qweight(codes, N, K, a) == QD_OK;
        ok &= qd_pack_awq_qzeros(zeros, G, N, b) == QD_OK;
        qd_from_f32(QD_DT_F16, scales, s16, G * N);
        ADD(".qweight", QD_DT_I32, 2, sw, a, K * N / 8 * 4);
        ADD(".qzeros", QD_DT_I32, 2, sz, b, G * N / 8 * 4);
        ADD(".scales", QD_DT_F16, 2, ss, s16, G * N * 2);
    } else { /* compressed-tensors, asymmetric */
        int64_t sw[2] = {N, K / 8}, sz[2] = {N / 8, G}, ss[2] = {N, G}, sh[1] = {2}, shape[2] = {N, K};
        ok &= qd_pack_ct_weight(codes, N, K, 4, a) == QD_OK;
        ok &= qd_pack_ct_zero_point(zeros, G, N, 4, b) == QD_OK;
        for (int g = 0; g < G; g++)
            for (int n = 0; n < N; n++) sT[n * G + g] = scales[g * N + n];
        ADD(".weight_packed", QD_DT_I32, 2, sw, a, N * K / 8 * 4);
        ADD(".weight_zero_point", QD_DT_I32, 2, sz, b, G * N / 8 * 4);
        ADD(".weight_scale", QD_DT_F32, 2, ss, sT, G * N * 4);
        ADD(".weight_shape", QD_DT_I64, 1, sh, shape, 16);
    }
    ok &= qd_stw_finish(w) == QD_OK;
    return ok;
}

static void check_read(const char *dir, int bits) {
    qd_checkpoint *ck = NULL;
    qd_qformat *qf = NULL;
    QD_EXPECT_EQ_INT(qd_ckpt_open(dir, 1, &ck), QD_OK);
    QD_EXPECT_EQ_INT(qd_qformat_open(dir, &qf), QD_OK);
    if (!ck || !qf) return;
    float *w = NULL;
    int64_t n, k;
    qd_qlinear_info info;
    QD_EXPECT_EQ_INT(qd_qformat_read_linear(qf, ck, "m.l", &w, &n, &k, &info), QD_OK);
    QD_EXPECT_EQ_INT(n, N);
    QD_EXPECT_EQ_INT(k, K);
    QD_EXPECT_EQ_INT(info.bits, bits);
    QD_EXPECT_EQ_INT(info.group_size, GS);
    QD_EXPECT_EQ_INT(info.sym, 0);
    QD_EXPECT(w && memcmp(w, want, sizeof want) == 0);
    QD_EXPECT(qd_qformat_is_aux_tensor("m.l.qweight") && !qd_qformat_is_aux_tensor("m.l.weight"));
    free(w);
    qd_qformat_close(qf);
    qd_ckpt_close(ck);
}

static void test_roundtrips(void) {
    make_layer();
    QD_EXPECT(write_ckpt("qformat-read-gptq", "{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":32}", 0));
    check_read("qformat-read-gptq", 4);
    /* the inspect --vllm-tp check over the checkpoint: asymmetric GPTQ never runs on Marlin */
    FILE *f = tmpfile();
    int nfb = -1, nbad = -1;
    QD_EXPECT_EQ_INT(qd_vllm_report("qformat-read-gptq", 2, 0, f, &nfb, &nbad), QD_OK);
    QD_EXPECT_EQ_INT(nfb, 1);
    QD_EXPECT_EQ_INT(nbad, 0);
    char text[1024] = {0};
    rewind(f);
    fread(text, 1, sizeof text - 1, f);
    fclose(f);
    QD_EXPECT_STR_CONTAINS(text, "m.l: gptq: 4-bit asymmetric group 32 is not a Marlin scheme");
    QD_EXPECT_STR_CONTAINS(text, "1 Linear modules, 1 miss Marlin, 0 do not load");
    QD_EXPECT(write_ckpt("qformat-read-awq", "{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":32}", 1));
    check_read("qformat-read-awq", 4);
    QD_EXPECT(write_ckpt("qformat-read-ct", "{\"quant_method\":\"compressed-tensors\",\"config_groups\":{\"group_0\":"
                         "{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":4,\"symmetric\":false,"
                         "\"strategy\":\"group\",\"group_size\":32}}}}", 2));
    check_read("qformat-read-ct", 4);
    qd_rm_rf("qformat-read-gptq");
    qd_rm_rf("qformat-read-awq");
    qd_rm_rf("qformat-read-ct");
}

static int dump(const char *dir, const char *prefix, const char *out) {
    qd_checkpoint *ck;
    qd_qformat *qf;
    if (qd_ckpt_open(dir, 1, &ck) != QD_OK) return 1;
    if (qd_qformat_open(dir, &qf) != QD_OK) return 1;
    float *w;
    int64_t n, k;
    if (qd_qformat_read_linear(qf, ck, prefix, &w, &n, &k, NULL) != QD_OK) return 1;
    qd_status st = qd_write_file_atomic(out, w, sizeof(float) * (size_t)(n * k));
    free(w);
    qd_qformat_close(qf);
    qd_ckpt_close(ck);
    return st == QD_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4) return dump(argv[1], argv[2], argv[3]);
    QD_RUN(test_roundtrips);
    return QD_TEST_END();
}
