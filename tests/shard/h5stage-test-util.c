/* SPDX-License-Identifier: MIT
 * h5stage-test-util.c - the scratch directory, random blocks and fingerprint of the staging tests
 * (h5stage-test-util.h). */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5stage-test-util.h"
#include "qd-fs.h"

static char root[256];

int h5t_begin(const char *tag) {
    snprintf(root, sizeof root, "/tmp/qd-%s-XXXXXX", tag);
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

void h5t_end(void) { qd_rm_rf(root); }

void subdir(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", root, name); }

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/* a random module N x K with groups of gs columns (act-order g_idx when shuffle) */
void make_module(qd_staged_module *m, const char *name, int64_t N, int64_t K, int gs, int bits, int shuffle) {
    memset(m, 0, sizeof *m);
    snprintf(m->q.name, sizeof m->q.name, "%s", name);
    m->q.N = N;
    m->q.K = K;
    m->q.G = (K + gs - 1) / gs;
    m->q.bits = bits;
    m->q.group_size = gs;
    m->q.sym = (int)(rnd() & 1);
    m->q.codes = malloc((size_t)(N * K));
    m->q.scales = malloc(sizeof(float) * (size_t)(m->q.G * N));
    m->q.zeros = malloc(sizeof(int32_t) * (size_t)(m->q.G * N));
    m->q.g_idx = malloc(sizeof(int32_t) * (size_t)K);
    for (int64_t i = 0; i < N * K; i++) m->q.codes[i] = (uint8_t)(rnd() % (1u << bits));
    for (int64_t i = 0; i < m->q.G * N; i++) {
        m->q.scales[i] = (float)(rnd() % 100000) * 1e-6f + 1e-4f;
        m->q.zeros[i] = (int32_t)(rnd() % (1u << bits));
    }
    for (int64_t k = 0; k < K; k++) m->q.g_idx[k] = (int32_t)(k / gs);
    if (shuffle)
        for (int64_t k = K - 1; k > 0; k--) {
            int64_t j = rnd() % (uint32_t)(k + 1);
            int32_t t = m->q.g_idx[k];
            m->q.g_idx[k] = m->q.g_idx[j];
            m->q.g_idx[j] = t;
        }
    m->s.loss = (double)rnd() / 1e6;
    m->s.damp = 0.01;
    m->s.seconds = 0.25;
    if (shuffle) snprintf(m->s.fallback, sizeof m->s.fallback, "rtn: hessian not positive definite");
}

/* a block of 3 modules and 2 tensors; caller frees with free_block */
qd_staged_block make_block(int64_t index) {
    qd_staged_block b = {.block = index, .rank = 1, .time_s = 3.5, .nmodules = 3, .ntensors = 2};
    b.modules = calloc(3, sizeof *b.modules);
    b.tensors = calloc(2, sizeof *b.tensors);
    make_module(&b.modules[0], "self_attn.q_proj", 6, 16, 4, 4, 0);
    make_module(&b.modules[1], "mlp.down_proj", 5, 24, 8, 3, 1);
    make_module(&b.modules[2], "mlp.gate_proj", 7, 9, 9, 8, 0);
    const char *tn[2] = {"model.layers.0.input_layernorm.weight", "model.layers.0.odd.weight"};
    int64_t shapes[2][2] = {{16, 0}, {3, 4}};
    for (int t = 0; t < 2; t++) {
        qd_staged_tensor *x = &b.tensors[t];
        snprintf(x->name, sizeof x->name, "%s", tn[t]);
        x->ndim = t == 0 ? 1 : 2;
        x->shape[0] = shapes[t][0];
        x->shape[1] = shapes[t][1];
        int64_t n = t == 0 ? 16 : 12;
        x->data = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) x->data[i] = (float)((int)(rnd() % 2001) - 1000) / 37.0f;
    }
    return b;
}

void free_block(qd_staged_block *b) {
    for (size_t i = 0; i < b->nmodules; i++) qd_qlinear_free(&b->modules[i].q);
    for (size_t i = 0; i < b->ntensors; i++) free(b->tensors[i].data);
    free(b->modules);
    free(b->tensors);
}

/* 1 if the two blocks hold the same names, shapes and bytes */
int same_block(const qd_staged_block *a, const qd_staged_block *c) {
    if (a->block != c->block || a->rank != c->rank || a->time_s != c->time_s || a->nmodules != c->nmodules ||
        a->ntensors != c->ntensors)
        return 0;
    for (size_t i = 0; i < a->nmodules; i++) {
        const qd_staged_module *x = &a->modules[i], *y = &c->modules[i];
        if (strcmp(x->q.name, y->q.name) || x->q.N != y->q.N || x->q.K != y->q.K || x->q.G != y->q.G || x->q.bits != y->q.bits ||
            x->q.group_size != y->q.group_size || x->q.sym != y->q.sym || x->s.loss != y->s.loss || x->s.damp != y->s.damp ||
            x->s.seconds != y->s.seconds || strcmp(x->s.fallback, y->s.fallback) ||
            memcmp(x->q.codes, y->q.codes, (size_t)(x->q.N * x->q.K)) ||
            memcmp(x->q.scales, y->q.scales, sizeof(float) * (size_t)(x->q.G * x->q.N)) ||
            memcmp(x->q.zeros, y->q.zeros, sizeof(int32_t) * (size_t)(x->q.G * x->q.N)) ||
            memcmp(x->q.g_idx, y->q.g_idx, sizeof(int32_t) * (size_t)x->q.K))
            return 0;
    }
    for (size_t i = 0; i < a->ntensors; i++) {
        const qd_staged_tensor *x = &a->tensors[i], *y = &c->tensors[i];
        if (strcmp(x->name, y->name) || x->ndim != y->ndim) return 0;
        int64_t n = 1;
        for (int d = 0; d < x->ndim; d++) {
            if (x->shape[d] != y->shape[d]) return 0;
            n *= x->shape[d];
        }
        if (memcmp(x->data, y->data, sizeof(float) * (size_t)n)) return 0;
    }
    return 1;
}

void make_fingerprint(qd_fingerprint *fpr, const char *recipe) {
    memset(fpr, 0, sizeof *fpr);
    qd_fingerprint_add(fpr, "qdist_version", "0.1.0");
    qd_fingerprint_add(fpr, "recipe", recipe);
    qd_fingerprint_add_sha256(fpr, "calibration_ids_sha256", "\x01\x02\x03", 3);
}
