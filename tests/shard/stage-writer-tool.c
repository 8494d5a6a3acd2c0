/* SPDX-License-Identifier: MIT
 * stage-writer-tool.c - qd-stage-writer DIR BLOCK: stage one deterministic block in DIR (a fresh
 * staging directory) and write DIR/expected.json with every value written, so that
 * tests/py/test_h5stage_h5py.py can check what h5py and h5dump read against what qdist wrote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-h5stage.h"

static uint32_t next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static qd_status fill_module(qd_staged_module *m, const char *name, int64_t N, int64_t K, int gs, int bits,
                             uint64_t *rng) {
    snprintf(m->q.name, sizeof m->q.name, "%s", name);
    m->q.N = N;
    m->q.K = K;
    m->q.G = (K + gs - 1) / gs;
    m->q.bits = bits;
    m->q.group_size = gs;
    m->q.sym = bits == 4;
    QD_ALLOC(m->q.codes, N * K);
    QD_ALLOC(m->q.scales, m->q.G * N);
    QD_ALLOC(m->q.zeros, m->q.G * N);
    QD_ALLOC(m->q.g_idx, K);
    for (int64_t i = 0; i < N * K; i++) m->q.codes[i] = (uint8_t)(next(rng) % (1u << bits));
    for (int64_t i = 0; i < m->q.G * N; i++) {
        m->q.scales[i] = (float)(next(rng) % 1000003) / 7919.0f;
        m->q.zeros[i] = (int32_t)(next(rng) % (1u << bits));
    }
    for (int64_t k = 0; k < K; k++) m->q.g_idx[k] = (int32_t)((K - 1 - k) / gs); /* not the identity order */
    m->s.loss = 1.0 / 3.0;
    m->s.damp = 0.01;
    m->s.seconds = 2.5;
    snprintf(m->s.fallback, sizeof m->s.fallback, "%s", bits == 8 ? "rtn: hessian not positive definite" : "");
    return QD_OK;
}

static cJSON *ints(const void *v, int64_t n, int u8) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(u8 ? ((const uint8_t *)v)[i] : ((const int32_t *)v)[i]));
    return a;
}

static cJSON *floats(const float *v, int64_t n) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: qd-stage-writer DIR BLOCK\n");
        return 2;
    }
    int64_t index = atoll(argv[2]);
    uint64_t rng = 42;
    qd_staged_module mods[2] = {0};
    qd_staged_tensor ten = {0};
    if (fill_module(&mods[0], "self_attn.q_proj", 8, 32, 16, 4, &rng) != QD_OK ||
        fill_module(&mods[1], "mlp.down_proj", 4, 20, 8, 8, &rng) != QD_OK)
        return 1;
    snprintf(ten.name, sizeof ten.name, "model.layers.%lld.input_layernorm.weight", (long long)index);
    ten.ndim = 1;
    ten.shape[0] = 32;
    ten.data = calloc(32, sizeof(float));
    if (!ten.data) return 1;
    for (int i = 0; i < 32; i++) ten.data[i] = 1.0f + (float)i / 64.0f;
    qd_staged_block b = {.block = index, .rank = 0, .time_s = 7.25, .nmodules = 2, .modules = mods, .ntensors = 1,
                         .tensors = &ten};

    qd_fingerprint fpr = {0};
    qd_stage *s = NULL;
    if (qd_fingerprint_add(&fpr, "qdist_version", QD_VERSION) != QD_OK || qd_stage_open(argv[1], &fpr, 0, &s) != QD_OK ||
        qd_stage_write_block(s, &b) != QD_OK)
        return 1;

    cJSON *root = cJSON_CreateObject(), *jm = cJSON_AddArrayToObject(root, "modules");
    cJSON_AddNumberToObject(root, "block", (double)index);
    cJSON_AddNumberToObject(root, "rank", 0);
    cJSON_AddNumberToObject(root, "time_s", b.time_s);
    for (int i = 0; i < 2; i++) {
        const qd_staged_module *m = &mods[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", m->q.name);
        cJSON_AddNumberToObject(o, "N", (double)m->q.N);
        cJSON_AddNumberToObject(o, "K", (double)m->q.K);
        cJSON_AddNumberToObject(o, "G", (double)m->q.G);
        cJSON_AddNumberToObject(o, "bits", m->q.bits);
        cJSON_AddNumberToObject(o, "group_size", m->q.group_size);
        cJSON_AddNumberToObject(o, "sym", m->q.sym);
        cJSON_AddNumberToObject(o, "loss", m->s.loss);
        cJSON_AddNumberToObject(o, "damp", m->s.damp);
        cJSON_AddNumberToObject(o, "time_s", m->s.seconds);
        cJSON_AddStringToObject(o, "fallback", m->s.fallback);
        cJSON_AddItemToObject(o, "codes", ints(m->q.codes, m->q.N * m->q.K, 1));
        cJSON_AddItemToObject(o, "scales", floats(m->q.scales, m->q.G * m->q.N));
        cJSON_AddItemToObject(o, "zeros", ints(m->q.zeros, m->q.G * m->q.N, 0));
        cJSON_AddItemToObject(o, "g_idx", ints(m->q.g_idx, m->q.K, 0));
        cJSON_AddItemToArray(jm, o);
    }
    cJSON *jt = cJSON_AddArrayToObject(root, "tensors"), *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", ten.name);
    cJSON_AddItemToObject(t, "shape", cJSON_CreateIntArray((int[]){32}, 1));
    cJSON_AddItemToObject(t, "data", floats(ten.data, 32));
    cJSON_AddItemToArray(jt, t);
    char *text = cJSON_Print(root), path[4096];
    if (!text || qd_path_join(path, sizeof path, argv[1], "expected.json") != QD_OK ||
        qd_write_file_atomic(path, text, strlen(text)) != QD_OK)
        return 1;
    printf("%s/block-%05lld.h5\n", argv[1], (long long)index);
    cJSON_free(text);
    cJSON_Delete(root);
    for (int i = 0; i < 2; i++) qd_qlinear_free(&mods[i].q);
    free(ten.data);
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
    return 0;
}
