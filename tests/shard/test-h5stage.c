/* SPDX-License-Identifier: MIT
 * test-h5stage.c - the staging directory: block round trip, fingerprint refusal naming the field,
 * resume listing exactly the staged blocks, interrupted writes ignored, corrupt files reported, the
 * fallback text at its full length (and an older staging's 64-byte one still read). */
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qd-fs.h"
#include "qd-h5stage.h"
#include "qd-log.h"
#include "qd-test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static char root[256];

static void subdir(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", root, name); }

/* a random module N x K with groups of gs columns (act-order g_idx when shuffle) */
static void make_module(qd_staged_module *m, const char *name, int64_t N, int64_t K, int gs, int bits, int shuffle) {
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
static qd_staged_block make_block(int64_t index) {
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

static void free_block(qd_staged_block *b) {
    for (size_t i = 0; i < b->nmodules; i++) qd_qlinear_free(&b->modules[i].q);
    for (size_t i = 0; i < b->ntensors; i++) free(b->tensors[i].data);
    free(b->modules);
    free(b->tensors);
}

/* 1 if the two blocks hold the same names, shapes and bytes */
static int same_block(const qd_staged_block *a, const qd_staged_block *c) {
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

static void make_fingerprint(qd_fingerprint *fpr, const char *recipe) {
    memset(fpr, 0, sizeof *fpr);
    qd_fingerprint_add(fpr, "qdist_version", "0.1.0");
    qd_fingerprint_add(fpr, "recipe", recipe);
    qd_fingerprint_add_sha256(fpr, "calibration_ids_sha256", "\x01\x02\x03", 3);
}

static void test_sha256(void) {
    char hex[65];
    qd_sha256_hex("", 0, hex);
    QD_EXPECT(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    qd_sha256_hex("abc", 3, hex);
    QD_EXPECT(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: two blocks */
    qd_sha256_hex(two, strlen(two), hex);
    QD_EXPECT(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
}

static void test_round_trip(void) {
    char dir[300];
    subdir(dir, sizeof dir, "rt");
    qd_fingerprint fpr;
    make_fingerprint(&fpr, "{\"method\":\"gptq\"}");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 0, &s), QD_OK);
    if (!s) return;
    qd_staged_block b = make_block(12);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 12), 0);
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 12), 1);
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s/block-00012.h5.tmp", dir);
    QD_EXPECT(!qd_path_exists(tmp));
    qd_staged_block *r = NULL;
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 12, &r), QD_OK);
    if (r) {
        QD_EXPECT(same_block(&b, r));
        QD_EXPECT_EQ_INT(r->block, 12);
        QD_EXPECT_EQ_INT(r->rank, 1);
        QD_EXPECT_NEAR(r->time_s, 3.5, 0);
        QD_EXPECT_EQ_INT(r->nmodules, 3);
        QD_EXPECT_EQ_INT(r->ntensors, 2);
        for (size_t i = 0; i < r->nmodules && i < 3; i++) {
            const qd_staged_module *a = &b.modules[i], *c = &r->modules[i];
            QD_EXPECT(strcmp(a->q.name, c->q.name) == 0); /* order kept (not alphabetical) */
            QD_EXPECT_EQ_INT(c->q.N, a->q.N);
            QD_EXPECT_EQ_INT(c->q.K, a->q.K);
            QD_EXPECT_EQ_INT(c->q.G, a->q.G);
            QD_EXPECT_EQ_INT(c->q.bits, a->q.bits);
            QD_EXPECT_EQ_INT(c->q.group_size, a->q.group_size);
            QD_EXPECT_EQ_INT(c->q.sym, a->q.sym);
            QD_EXPECT(memcmp(a->q.codes, c->q.codes, (size_t)(a->q.N * a->q.K)) == 0);
            QD_EXPECT(memcmp(a->q.scales, c->q.scales, sizeof(float) * (size_t)(a->q.G * a->q.N)) == 0);
            QD_EXPECT(memcmp(a->q.zeros, c->q.zeros, sizeof(int32_t) * (size_t)(a->q.G * a->q.N)) == 0);
            QD_EXPECT(memcmp(a->q.g_idx, c->q.g_idx, sizeof(int32_t) * (size_t)a->q.K) == 0);
            QD_EXPECT(a->s.loss == c->s.loss && a->s.damp == c->s.damp && a->s.seconds == c->s.seconds);
            QD_EXPECT(strcmp(a->s.fallback, c->s.fallback) == 0);
        }
        for (size_t i = 0; i < r->ntensors && i < 2; i++) {
            const qd_staged_tensor *a = &b.tensors[i], *c = &r->tensors[i];
            QD_EXPECT(strcmp(a->name, c->name) == 0);
            QD_EXPECT_EQ_INT(c->ndim, a->ndim);
            int64_t n = 1;
            for (int d = 0; d < a->ndim; d++) {
                QD_EXPECT_EQ_INT(c->shape[d], a->shape[d]);
                n *= a->shape[d];
            }
            QD_EXPECT(memcmp(a->data, c->data, sizeof(float) * (size_t)n) == 0);
        }
        qd_staged_block_free(r);
    }
    /* rewriting a staged block replaces it */
    b.modules[0].q.codes[0] ^= 1;
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 12, &r), QD_OK);
    if (r) QD_EXPECT_EQ_INT(r->modules[0].q.codes[0], b.modules[0].q.codes[0]);
    qd_staged_block_free(r);
    free_block(&b);
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
}

static void test_write_refuses_bad_block(void) {
    char dir[300];
    subdir(dir, sizeof dir, "bad");
    qd_fingerprint fpr;
    make_fingerprint(&fpr, "r");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 0, &s), QD_OK);
    if (!s) return;
    qd_staged_block b = make_block(0);
    b.modules[1].q.codes[7] = 8; /* 3-bit module */
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "mlp.down_proj");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "codes[0,7] = 8");
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 0), 0);
    b.modules[1].q.codes[7] = 1;
    snprintf(b.modules[2].q.name, sizeof b.modules[2].q.name, "self_attn.q_proj");
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "appears twice");
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 0), 0);
    free_block(&b);
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
}

static void test_fingerprint(void) {
    char dir[300];
    subdir(dir, sizeof dir, "fingerprint");
    qd_fingerprint fpr1, fpr2, fpr3;
    make_fingerprint(&fpr1, "{\"method\":\"gptq\",\"bits\":4,\"group_size\":128,\"damp\":0.01,\"act_order\":true,\"sym\":true}");
    make_fingerprint(&fpr2, "{\"method\":\"gptq\",\"bits\":4,\"group_size\":64,\"damp\":0.01,\"act_order\":true,\"sym\":true}");
    make_fingerprint(&fpr3, fpr1.values[1]);
    qd_fingerprint_add(&fpr3, "extra", "x");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr1, 0, &s), QD_OK);
    qd_stage_close(s);
    char path[400];
    snprintf(path, sizeof path, "%s/fingerprint.json", dir);
    QD_EXPECT(qd_path_exists(path));

    /* not empty, no --resume: refused, saying what to do */
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr1, 0, &s), QD_ERR_USAGE);
    QD_EXPECT(s == NULL);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "--resume");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "remove");

    /* same fingerprint: resumes */
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr1, 1, &s), QD_OK);
    qd_stage_close(s);
    s = NULL;

    /* a differing field: refused naming the field and both values around the difference */
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr2, 1, &s), QD_ERR_MISMATCH);
    QD_EXPECT(s == NULL);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "field 'recipe' differs");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "group_size\":128");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "group_size\":64");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "...");

    /* a field only one side has */
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr3, 1, &s), QD_ERR_MISMATCH);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "field 'extra' differs: staged (absent), this run 'x'");
    QD_EXPECT_EQ_INT(qd_stage_attach(dir, &fpr2, &s), QD_ERR_MISMATCH);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "'recipe'");
    QD_EXPECT_EQ_INT(qd_stage_attach(dir, &fpr1, &s), QD_OK);
    qd_stage_close(s);

    /* another rank whose DIR is not the one rank 0 wrote (not shared): refused */
    char other[300];
    subdir(other, sizeof other, "fingerprint-not-shared");
    QD_EXPECT_EQ_INT(qd_stage_attach(other, &fpr1, &s), QD_ERR_USAGE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "shared by all ranks");

    /* a non-empty directory that is not a staging directory */
    char junk[300], file[400];
    subdir(junk, sizeof junk, "fingerprint-junk");
    qd_mkdir_p(junk);
    snprintf(file, sizeof file, "%s/notes.txt", junk);
    qd_write_file_atomic(file, "x", 1);
    QD_EXPECT_EQ_INT(qd_stage_open(junk, &fpr1, 1, &s), QD_ERR_USAGE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "fingerprint.json");

    /* a broken fingerprint.json */
    qd_write_file_atomic(path, "{\"format\":", 10);
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr1, 1, &s), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "fingerprint.json: malformed");

    /* --resume on an absent directory starts fresh */
    char fresh[300];
    subdir(fresh, sizeof fresh, "fingerprint-fresh");
    QD_EXPECT_EQ_INT(qd_stage_open(fresh, &fpr1, 1, &s), QD_OK);
    qd_stage_close(s);
    qd_fingerprint_free(&fpr1);
    qd_fingerprint_free(&fpr2);
    qd_fingerprint_free(&fpr3);
}

static void test_fingerprint_model(void) {
    char dir[300], path[400];
    subdir(dir, sizeof dir, "model");
    qd_mkdir_p(dir);
    const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    unsigned char file[8 + 64 + 8];
    size_t n = strlen(hdr);
    memset(file, 0, sizeof file);
    for (int i = 0; i < 8; i++) file[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(file + 8, hdr, n);
    memset(file + 8 + n, 0x3f, 8);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    qd_write_file_atomic(path, file, 8 + n + 8);
    snprintf(path, sizeof path, "%s/config.json", dir);
    qd_write_file_atomic(path, "{}", 2);
    snprintf(path, sizeof path, "%s/README.md", dir);
    qd_write_file_atomic(path, "hi", 2);

    qd_fingerprint fpr = {0};
    QD_EXPECT_EQ_INT(qd_fingerprint_add_model(&fpr, dir), QD_OK);
    QD_EXPECT_EQ_INT(fpr.n, 2);
    char hex[65], want[200];
    qd_sha256_hex(file, 8 + n, hex);
    snprintf(want, sizeof want, "size=%zu header_sha256=%s", 8 + n + 8, hex);
    QD_EXPECT(qd_fingerprint_get(&fpr, "model/model.safetensors") && strcmp(qd_fingerprint_get(&fpr, "model/model.safetensors"), want) == 0);
    QD_EXPECT_STR_CONTAINS(qd_fingerprint_get(&fpr, "model/config.json"), "size=2 sha256=44136fa355b3678a1146ad16f7e8649e");
    QD_EXPECT(fpr.n == 2 && strcmp(fpr.keys[0], "model/config.json") == 0); /* name order */

    /* the tensor data is not read (cheap); the header is */
    qd_fingerprint fpr2 = {0};
    memset(file + 8 + n, 0x40, 8);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    qd_write_file_atomic(path, file, 8 + n + 8);
    QD_EXPECT_EQ_INT(qd_fingerprint_add_model(&fpr2, dir), QD_OK);
    QD_EXPECT(fpr2.n == 2 && strcmp(fpr2.values[1], fpr.values[1]) == 0);
    qd_fingerprint_free(&fpr2);
    file[8 + 10] = 'X';
    qd_write_file_atomic(path, file, 8 + n + 8);
    QD_EXPECT_EQ_INT(qd_fingerprint_add_model(&fpr2, dir), QD_OK);
    QD_EXPECT(fpr2.n == 2 && strcmp(fpr2.values[1], fpr.values[1]) != 0);
    qd_fingerprint_free(&fpr2);

    QD_EXPECT_EQ_INT(qd_fingerprint_add(&fpr, "model/config.json", "y"), QD_ERR_INTERNAL); /* keys unique */
    char empty[300];
    subdir(empty, sizeof empty, "model-empty");
    qd_mkdir_p(empty);
    QD_EXPECT_EQ_INT(qd_fingerprint_add_model(&fpr2, empty), QD_ERR_USAGE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "no .safetensors");
    qd_fingerprint_free(&fpr);
    qd_fingerprint_free(&fpr2);
}

static void touch(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_resume_and_leftovers(void) {
    char dir[300], path[400];
    subdir(dir, sizeof dir, "resume");
    qd_fingerprint fpr;
    make_fingerprint(&fpr, "r");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 0, &s), QD_OK);
    if (!s) return;
    int64_t staged[3] = {0, 2, 105};
    for (int i = 0; i < 3; i++) {
        qd_staged_block b = make_block(staged[i]);
        QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
        free_block(&b);
    }
    /* a crash in the middle of writing block 3: a real HDF5 start, cut short */
    qd_staged_block b3 = make_block(3);
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b3), QD_OK);
    free_block(&b3);
    char fin[400];
    snprintf(fin, sizeof fin, "%s/block-00003.h5", dir);
    snprintf(path, sizeof path, "%s/block-00003.h5.tmp", dir);
    QD_EXPECT_EQ_INT(rename(fin, path), 0);
    QD_EXPECT_EQ_INT(truncate(path, 1000), 0);
    snprintf(path, sizeof path, "%s/block-00004.h5.tmp", dir);
    touch(path, "garbage");
    snprintf(path, sizeof path, "%s/fingerprint.json.tmp.12345", dir);
    touch(path, "{");
    snprintf(path, sizeof path, "%s/block-7.h5", dir); /* not our name pattern */
    touch(path, "x");
    qd_stage_close(s);

    s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 1, &s), QD_OK);
    if (!s) return;
    int64_t *list = NULL;
    size_t n = 0;
    QD_EXPECT_EQ_INT(qd_stage_list(s, &list, &n), QD_OK);
    QD_EXPECT_EQ_INT(n, 3);
    for (size_t i = 0; i < n && i < 3; i++) QD_EXPECT_EQ_INT(list[i], staged[i]);
    free(list);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 3), 0);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 4), 0);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 1), 0);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 105), 1);
    /* resume removed the interrupted writes */
    snprintf(path, sizeof path, "%s/block-00003.h5.tmp", dir);
    QD_EXPECT(!qd_path_exists(path));
    snprintf(path, sizeof path, "%s/fingerprint.json.tmp.12345", dir);
    QD_EXPECT(!qd_path_exists(path));
    /* a .tmp appearing later (another rank mid-write) is not counted either */
    snprintf(path, sizeof path, "%s/block-00009.h5.tmp", dir);
    touch(path, "partial");
    QD_EXPECT_EQ_INT(qd_stage_list(s, &list, &n), QD_OK);
    QD_EXPECT_EQ_INT(n, 3);
    free(list);
    /* the block that was interrupted is computed again and staged */
    qd_staged_block again = make_block(3);
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &again), QD_OK);
    free_block(&again);
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 3), 1);
    qd_staged_block *r = NULL;
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 3, &r), QD_OK);
    qd_staged_block_free(r);
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
}

static void test_corrupt(void) {
    char dir[300], path[400], copy[400];
    subdir(dir, sizeof dir, "corrupt");
    qd_fingerprint fpr;
    make_fingerprint(&fpr, "r");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 0, &s), QD_OK);
    if (!s) return;
    qd_staged_block b = make_block(7);
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
    free_block(&b);
    snprintf(path, sizeof path, "%s/block-00007.h5", dir);
    qd_staged_block *r = NULL;

    /* truncated */
    snprintf(copy, sizeof copy, "%s/block-00008.h5", dir);
    qd_copy_file(path, copy);
    struct stat st;
    stat(copy, &st);
    QD_EXPECT_EQ_INT(truncate(copy, st.st_size / 2), 0);
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 8, &r), QD_ERR_FORMAT);
    QD_EXPECT(r == NULL);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "block-00008.h5");

    /* not HDF5 at all */
    snprintf(copy, sizeof copy, "%s/block-00009.h5", dir);
    touch(copy, "this is not an HDF5 file, just some text that is long enough to look like one maybe");
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 9, &r), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "block-00009.h5: not a readable HDF5 file");
    snprintf(copy, sizeof copy, "%s/block-00010.h5", dir);
    touch(copy, "");
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 10, &r), QD_ERR_FORMAT);

    /* a dataset missing, a wrong shape, an attribute missing, a code out of range */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    struct {
        int n;
        const char *expect;
    } cases[] = {{11, "/modules/mlp.down_proj/scales: dataset missing"},
                 {12, "/modules/self_attn.q_proj/g_idx: shape [3], expected [16]"},
                 {13, "/modules/mlp.gate_proj attribute 'bits': missing"},
                 {14, "/modules/self_attn.q_proj/codes[0,0] = 200, expected < 2^4"},
                 {15, "/tensors: group missing"},
                 {16, "'block' is 7, expected 16"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(copy, sizeof copy, "%s/block-%05d.h5", dir, cases[c].n);
        qd_copy_file(path, copy);
        hid_t f = H5Fopen(copy, H5F_ACC_RDWR, H5P_DEFAULT);
        QD_EXPECT(f >= 0);
        if (cases[c].n == 11) H5Ldelete(f, "/modules/mlp.down_proj/scales", H5P_DEFAULT);
        if (cases[c].n == 12) {
            H5Ldelete(f, "/modules/self_attn.q_proj/g_idx", H5P_DEFAULT);
            hsize_t d = 3;
            hid_t sp = H5Screate_simple(1, &d, NULL);
            hid_t ds = H5Dcreate2(f, "/modules/self_attn.q_proj/g_idx", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                  H5P_DEFAULT);
            int32_t v[3] = {0, 0, 0};
            H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
            H5Dclose(ds);
            H5Sclose(sp);
        }
        if (cases[c].n == 13) H5Adelete_by_name(f, "/modules/mlp.gate_proj", "bits", H5P_DEFAULT);
        if (cases[c].n == 14) {
            hid_t ds = H5Dopen2(f, "/modules/self_attn.q_proj/codes", H5P_DEFAULT);
            uint8_t codes[6 * 16] = {200};
            H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, codes);
            H5Dclose(ds);
        }
        if (cases[c].n == 15) H5Ldelete(f, "/tensors", H5P_DEFAULT);
        H5Fclose(f);
        r = NULL;
        QD_EXPECT_EQ_INT(qd_stage_read_block(s, cases[c].n, &r), QD_ERR_FORMAT);
        QD_EXPECT(r == NULL);
        QD_EXPECT_STR_CONTAINS(qd_last_error(), copy);
        QD_EXPECT_STR_CONTAINS(qd_last_error(), cases[c].expect);
    }
    /* the original is intact */
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 7, &r), QD_OK);
    qd_staged_block_free(r);
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 99, &r), QD_ERR_IO);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "not found");
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
}

/* The fallback text keeps its full length (QD_FALLBACK_MAX - 1 bytes) through the staging, and a block
 * staged before that (its fallback attribute a 64-byte string: the text cut to 63 bytes) still reads. */
static void test_fallback_length(void) {
    char dir[300], path[400];
    subdir(dir, sizeof dir, "fallback");
    qd_fingerprint fpr;
    make_fingerprint(&fpr, "r");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 0, &s), QD_OK);
    if (!s) return;
    qd_staged_block b = make_block(3);
    char longest[QD_FALLBACK_MAX];
    memset(longest, 'x', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    memcpy(longest, "damp raised", 11);
    memcpy(longest + sizeof longest - 4, "end", 3);
    memcpy(b.modules[0].s.fallback, longest, sizeof longest);
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
    qd_staged_block *r = NULL;
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 3, &r), QD_OK);
    if (r) QD_EXPECT(strcmp(r->modules[0].s.fallback, longest) == 0);
    qd_staged_block_free(r);

    /* as an older qdist wrote it: a fixed-length string of 64 bytes, NUL-terminated */
    const char *old = "Cholesky failed for damp 0.01..0.1 (5 attempts): RTN (Hinv = I)"; /* 63 bytes */
    QD_EXPECT_EQ_INT((int)strlen(old), 63);
    snprintf(path, sizeof path, "%s/block-00003.h5", dir);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    QD_EXPECT(f >= 0);
    QD_EXPECT(H5Adelete_by_name(f, "/modules/self_attn.q_proj", "fallback", H5P_DEFAULT) >= 0);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, 64);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t a = H5Acreate_by_name(f, "/modules/self_attn.q_proj", "fallback", t, sp, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT);
    QD_EXPECT(a >= 0);
    QD_EXPECT(H5Awrite(a, t, old) >= 0);
    QD_EXPECT(H5Aget_storage_size(a) == 64);
    H5Aclose(a), H5Sclose(sp), H5Tclose(t);
    H5Fclose(f);
    r = NULL;
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 3, &r), QD_OK);
    if (r) {
        QD_EXPECT(strcmp(r->modules[0].s.fallback, old) == 0);
        QD_EXPECT(strcmp(r->modules[1].s.fallback, b.modules[1].s.fallback) == 0); /* the others untouched */
    }
    qd_staged_block_free(r);
    free_block(&b);
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
}

/* Damage anywhere in a staged file (one byte changed, every 17th position): the read either fails with
 * one line naming the file, or returns exactly what was written (the byte was padding); never another
 * value (metadata and every dataset carry checksums), never a crash, no HDF5 id left open. */
static void test_damage_sweep(void) {
    char dir[300], path[400], bad[400];
    subdir(dir, sizeof dir, "damage");
    qd_fingerprint fpr;
    make_fingerprint(&fpr, "r");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 0, &s), QD_OK);
    if (!s) return;
    qd_staged_block b = make_block(1);
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
    snprintf(path, sizeof path, "%s/block-00001.h5", dir);
    snprintf(bad, sizeof bad, "%s/damaged.h5", dir);
    char *orig = NULL;
    size_t len = 0;
    QD_EXPECT_EQ_INT(qd_read_file(path, 1 << 24, &orig, &len), QD_OK);
    int refused = 0, same = 0, wrong = 0, leaked = 0;
    for (size_t pos = 0; orig && pos < len; pos += 17) {
        orig[pos] ^= 0x5a;
        FILE *f = fopen(bad, "wb"); /* no fsync: this copy need not be durable */
        if (f) {
            fwrite(orig, 1, len, f);
            fclose(f);
        }
        orig[pos] ^= 0x5a;
        qd_staged_block *r = NULL;
        qd_status st = qd_stage_read_block_file(bad, &r);
        if (st != QD_OK) {
            refused++;
            if (!strstr(qd_last_error(), "damaged.h5")) wrong++;
        } else if (same_block(&b, r)) {
            same++;
        } else {
            wrong++;
            fprintf(stderr, "byte %zu changed: read succeeded with different content\n", pos);
        }
        qd_staged_block_free(r);
        if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) leaked++;
    }
    fprintf(stderr, "damage sweep: %zu bytes, %d positions refused, %d read back unchanged\n", len, refused, same);
    QD_EXPECT(refused > 0);
    QD_EXPECT_EQ_INT(wrong, 0);
    QD_EXPECT_EQ_INT(leaked, 0);
    free(orig);
    free_block(&b);
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
}

/* the source hashes a block records (/sources): kept byte for byte; absent when none were given */
static void test_sources(void) {
    char dir[300];
    subdir(dir, sizeof dir, "src");
    qd_fingerprint fpr;
    make_fingerprint(&fpr, "{\"method\":\"rtn\"}");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fpr, 0, &s), QD_OK);
    if (!s) return;
    qd_staged_block b = make_block(3);
    char text[] = "model.layers.3.mlp.up_proj.weight 0123456789abcdef\nmodel.layers.3.x 00000000000000ff\n";
    b.sources = text;
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
    qd_staged_block *r = NULL;
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 3, &r), QD_OK);
    if (r) QD_EXPECT(r->sources && strcmp(r->sources, text) == 0);
    qd_staged_block_free(r);
    b.sources = NULL;
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
    r = NULL;
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 3, &r), QD_OK);
    if (r) QD_EXPECT(r->sources == NULL);
    qd_staged_block_free(r);
    free_block(&b);
    qd_stage_close(s);
    qd_fingerprint_free(&fpr);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/qd-h5stage-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    QD_RUN(test_sha256);
    QD_RUN(test_round_trip);
    QD_RUN(test_sources);
    QD_RUN(test_write_refuses_bad_block);
    QD_RUN(test_fallback_length);
    QD_RUN(test_fingerprint);
    QD_RUN(test_fingerprint_model);
    QD_RUN(test_resume_and_leftovers);
    QD_RUN(test_corrupt);
    QD_RUN(test_damage_sweep);
    qd_rm_rf(root);
    return QD_TEST_END();
}
