/* SPDX-License-Identifier: MIT
 * Writer -> reader round trips (every dtype, sharding, the index), the atomic output directory, and
 * the checkpoint-directory rules (index and shards must agree, missing shard, bad index, pickles).
 * The shard layout is checked against the format text (header padded to 8, __metadata__ format pt,
 * 1-based 5-digit shard names), not against the reader alone.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "qd-fs.h"
#include "qd-log.h"
#include "qd-safetensors.h"
#include "qd-st-writer.h"
#include "qd-test.h"

static char tmpdir[256];

static void pattern(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 131u + i * 29u + (i >> 8));
}

static void join(char *out, size_t cap, const char *a, const char *b) { snprintf(out, cap, "%s/%s", a, b); }

static void test_roundtrip_all_dtypes(void) {
    char final[512];
    join(final, sizeof final, tmpdir, "all-dtypes");
    qd_outdir *o = NULL;
    QD_EXPECT_EQ_INT(qd_outdir_begin(final, 0, &o), QD_OK);
    if (!o) return;
    QD_EXPECT(!qd_path_exists(final)); /* nothing visible until commit */
    qd_stw *w = NULL;
    QD_EXPECT_EQ_INT(qd_stw_open(qd_outdir_path(o), "model", QD_DEFAULT_MAX_SHARD_BYTES, &w), QD_OK);
    unsigned char buf[4096];
    for (int dt = 0; dt < QD_DT_COUNT; dt++) {
        /* 8*3 elements fill whole bytes for every width, F4 and F6 included */
        int64_t shape[2] = {8, 3};
        size_t nbytes = (size_t)(24 * qd_dtype_bits((qd_dtype)dt) / 8);
        pattern(buf, nbytes, (unsigned)dt);
        char name[64];
        snprintf(name, sizeof name, "t.%s", qd_dtype_name((qd_dtype)dt));
        QD_EXPECT_EQ_INT(qd_stw_add(w, name, (qd_dtype)dt, 2, shape, buf, nbytes), QD_OK);
    }
    int64_t sshape[1];
    QD_EXPECT_EQ_INT(qd_stw_add(w, "scalar", QD_DT_F32, 0, sshape, buf, 4), QD_OK);
    int64_t zshape[2] = {0, 5};
    QD_EXPECT_EQ_INT(qd_stw_add(w, "empty", QD_DT_BF16, 2, zshape, buf, 0), QD_OK);
    /* misuse is refused, not written */
    QD_EXPECT_EQ_INT(qd_stw_add(w, "scalar", QD_DT_F32, 0, sshape, buf, 4), QD_ERR_INTERNAL);
    QD_EXPECT_EQ_INT(qd_stw_add(w, "bad", QD_DT_F32, 1, zshape + 1, buf, 4), QD_ERR_INTERNAL);
    QD_EXPECT_EQ_INT(qd_stw_finish(w), QD_OK);
    QD_EXPECT_EQ_INT(qd_outdir_commit(o), QD_OK);

    char single[600], index[600];
    join(single, sizeof single, final, "model.safetensors");
    join(index, sizeof index, final, "model.safetensors.index.json");
    QD_EXPECT(qd_path_exists(single));
    QD_EXPECT(!qd_path_exists(index));
    qd_st_file *f = NULL;
    QD_EXPECT_EQ_INT(qd_st_open(single, 1, &f), QD_OK);
    if (!f) return;
    QD_EXPECT_EQ_INT(f->header_len % 8, 0);
    QD_EXPECT_EQ_INT(f->ntensors, QD_DT_COUNT + 2);
    QD_EXPECT(f->nmeta == 1 && strcmp(f->meta_keys[0], "format") == 0 && strcmp(f->meta_values[0], "pt") == 0);
    /* header order = insertion order */
    QD_EXPECT(strcmp(f->tensors[0].name, "t.BOOL") == 0);
    QD_EXPECT(strcmp(f->tensors[QD_DT_COUNT].name, "scalar") == 0);
    QD_EXPECT_EQ_INT(f->tensors[QD_DT_COUNT].ndim, 0);
    int bad = 0;
    for (int dt = 0; dt < QD_DT_COUNT; dt++) {
        const qd_st_tensor *t = &f->tensors[dt];
        size_t nbytes = (size_t)(24 * qd_dtype_bits((qd_dtype)dt) / 8);
        pattern(buf, nbytes, (unsigned)dt);
        if (t->dtype != (qd_dtype)dt || t->ndim != 2 || t->shape[0] != 8 || t->shape[1] != 3 || t->nbytes != nbytes ||
            memcmp(f->map + t->file_offset, buf, nbytes) != 0) {
            fprintf(stderr, "  dtype %s does not round-trip\n", qd_dtype_name((qd_dtype)dt));
            bad++;
        }
    }
    QD_EXPECT_EQ_INT(bad, 0);
    qd_st_close(f);
}

static void test_sharding(void) {
    char final[512];
    join(final, sizeof final, tmpdir, "sharded");
    qd_outdir *o = NULL;
    QD_EXPECT_EQ_INT(qd_outdir_begin(final, 0, &o), QD_OK);
    if (!o) return;
    qd_stw *w = NULL;
    /* 100-byte shards: 40+40 fit, the third 40 opens shard 2, the 300-byte tensor gets its own */
    QD_EXPECT_EQ_INT(qd_stw_open(qd_outdir_path(o), "model", 100, &w), QD_OK);
    unsigned char buf[1200];
    const int nt = 7;
    const int64_t sizes[7] = {10, 10, 10, 75, 10, 10, 1}; /* F32 elements: 40,40,40,300,40,40,4 bytes */
    const int want_shard[7] = {1, 1, 2, 3, 4, 4, 4}; /* 40+40+4 still fits in 100 */
    for (int i = 0; i < nt; i++) {
        char name[32];
        snprintf(name, sizeof name, "layer.%d.w", i);
        pattern(buf, (size_t)sizes[i] * 4, (unsigned)i + 100);
        QD_EXPECT_EQ_INT(qd_stw_add(w, name, QD_DT_F32, 1, &sizes[i], buf, (size_t)sizes[i] * 4), QD_OK);
    }
    QD_EXPECT_EQ_INT(qd_stw_finish(w), QD_OK);
    QD_EXPECT_EQ_INT(qd_outdir_commit(o), QD_OK);

    char index[600];
    join(index, sizeof index, final, "model.safetensors.index.json");
    char *text;
    size_t len;
    QD_EXPECT_EQ_INT(qd_read_file(index, 1 << 20, &text, &len), QD_OK);
    cJSON *root = cJSON_Parse(text);
    free(text);
    QD_EXPECT(root != NULL);
    if (!root) return;
    const cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "metadata"), "total_size");
    QD_EXPECT(cJSON_IsNumber(ts) && ts->valuedouble == 504);
    const cJSON *wm = cJSON_GetObjectItem(root, "weight_map");
    QD_EXPECT_EQ_INT(cJSON_GetArraySize(wm), nt);
    for (int i = 0; i < nt; i++) {
        char name[32], want[64];
        snprintf(name, sizeof name, "layer.%d.w", i);
        snprintf(want, sizeof want, "model-%05d-of-00004.safetensors", want_shard[i]);
        const cJSON *v = cJSON_GetObjectItem(wm, name);
        QD_EXPECT(cJSON_IsString(v) && strcmp(v->valuestring, want) == 0);
        if (cJSON_IsString(v) && strcmp(v->valuestring, want) != 0) fprintf(stderr, "  %s -> %s\n", name, v->valuestring);
    }
    cJSON_Delete(root);
    /* no scratch or partial files are left behind */
    char left[600];
    join(left, sizeof left, final, ".model-shard-00001.partial");
    QD_EXPECT(!qd_path_exists(left));

    for (int map = 0; map <= 1; map++) {
        qd_checkpoint *c = NULL;
        QD_EXPECT_EQ_INT(qd_ckpt_open(final, map, &c), QD_OK);
        if (!c) continue;
        QD_EXPECT_EQ_INT(c->sharded, 1);
        QD_EXPECT_EQ_INT(c->nfiles, 4);
        QD_EXPECT_EQ_INT(c->ntensors, nt);
        for (int i = 0; i < nt; i++) {
            char name[32];
            snprintf(name, sizeof name, "layer.%d.w", i);
            const qd_st_tensor *t = qd_ckpt_find(c, name);
            QD_EXPECT(t != NULL);
            if (!t) continue;
            unsigned char got[1200];
            pattern(buf, (size_t)sizes[i] * 4, (unsigned)i + 100);
            QD_EXPECT_EQ_INT(qd_ckpt_read_raw(c, t, got), QD_OK);
            QD_EXPECT(memcmp(got, buf, (size_t)sizes[i] * 4) == 0);
            QD_EXPECT_EQ_INT(c->files[t->file_index]->header_len % 8, 0);
        }
        qd_ckpt_close(c);
    }
}

static void test_f32_conversion(void) {
    char final[512];
    join(final, sizeof final, tmpdir, "conv");
    qd_outdir *o = NULL;
    QD_EXPECT_EQ_INT(qd_outdir_begin(final, 0, &o), QD_OK);
    if (!o) return;
    qd_stw *w = NULL;
    QD_EXPECT_EQ_INT(qd_stw_open(qd_outdir_path(o), "model", QD_DEFAULT_MAX_SHARD_BYTES, &w), QD_OK);
    const float vals[5] = {1.0f, -2.5f, 0.333251953125f, 65504.0f, 0.0f}; /* exact in f16 and bf16? not all */
    int64_t n = 5;
    uint16_t h[5], b[5];
    double d[5];
    for (int i = 0; i < 5; i++) {
        h[i] = qd_f32_to_f16(vals[i]);
        b[i] = qd_f32_to_bf16(vals[i]);
        d[i] = vals[i];
    }
    QD_EXPECT_EQ_INT(qd_stw_add(w, "h", QD_DT_F16, 1, &n, h, sizeof h), QD_OK);
    QD_EXPECT_EQ_INT(qd_stw_add(w, "b", QD_DT_BF16, 1, &n, b, sizeof b), QD_OK);
    QD_EXPECT_EQ_INT(qd_stw_add(w, "d", QD_DT_F64, 1, &n, d, sizeof d), QD_OK);
    QD_EXPECT_EQ_INT(qd_stw_finish(w), QD_OK);
    QD_EXPECT_EQ_INT(qd_outdir_commit(o), QD_OK);
    qd_checkpoint *c = NULL;
    QD_EXPECT_EQ_INT(qd_ckpt_open(final, 0, &c), QD_OK);
    if (!c) return;
    float out[5];
    QD_EXPECT_EQ_INT(qd_ckpt_read_f32(c, qd_ckpt_find(c, "h"), out), QD_OK);
    for (int i = 0; i < 5; i++) QD_EXPECT_NEAR(out[i], vals[i], 0); /* all five are f16-exact */
    QD_EXPECT_EQ_INT(qd_ckpt_read_f32(c, qd_ckpt_find(c, "b"), out), QD_OK);
    QD_EXPECT_NEAR(out[1], -2.5, 0);
    QD_EXPECT_NEAR(out[2], 0.333984375, 0); /* bf16 keeps 8 significant bits */
    QD_EXPECT_EQ_INT(qd_ckpt_read_f32(c, qd_ckpt_find(c, "d"), out), QD_OK);
    for (int i = 0; i < 5; i++) QD_EXPECT_NEAR(out[i], vals[i], 0);
    qd_ckpt_close(c);
}

static void test_outdir(void) {
    char final[512], file[600];
    join(final, sizeof final, tmpdir, "existing");
    qd_mkdir_p(final);
    join(file, sizeof file, final, "keep.txt");
    qd_write_file_atomic(file, "x", 1);
    qd_outdir *o = NULL;
    qd_clear_error();
    QD_EXPECT_EQ_INT(qd_outdir_begin(final, 0, &o), QD_ERR_USAGE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "not empty");
    /* a directory qdist did not write (no marker) is never replaced, even with overwrite */
    qd_clear_error();
    QD_EXPECT_EQ_INT(qd_outdir_begin(final, 1, &o), QD_ERR_USAGE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), QD_OUTDIR_MARKER);
    QD_EXPECT(qd_path_exists(file));
    char marker[600];
    join(marker, sizeof marker, final, QD_OUTDIR_MARKER);
    qd_write_file_atomic(marker, "{\"tool\": \"qdist\"}", 17);
    qd_clear_error();
    QD_EXPECT_EQ_INT(qd_outdir_begin(final, 0, &o), QD_ERR_USAGE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "--overwrite");
    /* abort leaves nothing, and the old content stays */
    QD_EXPECT_EQ_INT(qd_outdir_begin(final, 1, &o), QD_OK);
    if (!o) return;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s", qd_outdir_path(o));
    QD_EXPECT(qd_is_dir(tmp));
    qd_outdir_abort(o);
    QD_EXPECT(!qd_path_exists(tmp));
    QD_EXPECT(qd_path_exists(file));
    /* overwrite replaces the old directory as a whole */
    QD_EXPECT_EQ_INT(qd_outdir_begin(final, 1, &o), QD_OK);
    if (!o) return;
    char newf[700];
    join(newf, sizeof newf, qd_outdir_path(o), "new.txt");
    qd_write_file_atomic(newf, "y", 1);
    QD_EXPECT_EQ_INT(qd_outdir_commit(o), QD_OK);
    QD_EXPECT(!qd_path_exists(file));
    join(newf, sizeof newf, final, "new.txt");
    QD_EXPECT(qd_path_exists(newf));
    QD_EXPECT(qd_outdir_has_marker(final));
    /* a writer aborted half-way leaves no finished-looking output */
    char final2[512];
    join(final2, sizeof final2, tmpdir, "crashed");
    QD_EXPECT_EQ_INT(qd_outdir_begin(final2, 0, &o), QD_OK);
    qd_stw *w = NULL;
    QD_EXPECT_EQ_INT(qd_stw_open(qd_outdir_path(o), "model", 8, &w), QD_OK);
    int64_t n = 4;
    float v[4] = {0};
    QD_EXPECT_EQ_INT(qd_stw_add(w, "a", QD_DT_F32, 1, &n, v, 16), QD_OK);
    QD_EXPECT_EQ_INT(qd_stw_add(w, "b", QD_DT_F32, 1, &n, v, 16), QD_OK);
    qd_stw_abort(w);
    qd_outdir_abort(o);
    QD_EXPECT(!qd_path_exists(final2));
}

static void put(const char *dir, const char *name, const char *text) {
    char p[700];
    join(p, sizeof p, dir, name);
    qd_write_file_atomic(p, text, strlen(text));
}

/* write a 2-shard checkpoint with the writer, then break it in the ways the index can be broken */
static void make_sharded(const char *dir) {
    qd_rm_rf(dir);
    qd_mkdir_p(dir);
    qd_stw *w = NULL;
    qd_stw_open(dir, "model", 32, &w); /* shard 1: a, b; shard 2: c */
    int64_t n = 4;
    float v[4] = {1, 2, 3, 4};
    qd_stw_add(w, "a", QD_DT_F32, 1, &n, v, 16);
    qd_stw_add(w, "b", QD_DT_F32, 1, &n, v, 16);
    qd_stw_add(w, "c", QD_DT_F32, 1, &n, v, 16);
    qd_stw_finish(w);
}

static void expect_ckpt_fails(const char *dir, qd_status want, const char *needle1, const char *needle2) {
    qd_checkpoint *c = NULL;
    qd_clear_error();
    qd_status st = qd_ckpt_open(dir, 0, &c);
    QD_EXPECT_EQ_INT(st, want);
    QD_EXPECT(c == NULL);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), needle1);
    if (needle2) QD_EXPECT_STR_CONTAINS(qd_last_error(), needle2);
    qd_ckpt_close(c);
}

static void test_checkpoint_dirs(void) {
    char dir[512], p[700];
    join(dir, sizeof dir, tmpdir, "ck");
    make_sharded(dir);
    qd_checkpoint *c = NULL;
    QD_EXPECT_EQ_INT(qd_ckpt_open(dir, 1, &c), QD_OK);
    if (c) QD_EXPECT_EQ_INT(c->nfiles, 2);
    qd_ckpt_close(c);

    /* a shard named in the index is missing */
    join(p, sizeof p, dir, "model-00002-of-00002.safetensors");
    unlink(p);
    expect_ckpt_fails(dir, QD_ERR_IO, "model-00002-of-00002.safetensors", "missing");

    /* the index is not JSON */
    make_sharded(dir);
    put(dir, "model.safetensors.index.json", "{\"weight_map\": {\"a\": ");
    expect_ckpt_fails(dir, QD_ERR_FORMAT, "model.safetensors.index.json", "not valid JSON");
    put(dir, "model.safetensors.index.json", "[1, 2]");
    expect_ckpt_fails(dir, QD_ERR_FORMAT, "model.safetensors.index.json", "weight_map");
    /* path escapes are refused */
    put(dir, "model.safetensors.index.json", "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
    expect_ckpt_fails(dir, QD_ERR_FORMAT, "model.safetensors.index.json", "tensor 'a'");

    /* the index maps a tensor that is absent from its shard */
    put(dir, "model.safetensors.index.json",
        "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\","
        " \"c\": \"model-00002-of-00002.safetensors\", \"d\": \"model-00002-of-00002.safetensors\"}}");
    expect_ckpt_fails(dir, QD_ERR_FORMAT, "tensor 'd'", "model-00002-of-00002.safetensors");
    /* the index maps a tensor to the wrong shard */
    put(dir, "model.safetensors.index.json",
        "{\"weight_map\": {\"a\": \"model-00002-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\","
        " \"c\": \"model-00002-of-00002.safetensors\"}}");
    expect_ckpt_fails(dir, QD_ERR_FORMAT, "tensor 'a'", "it is in model-00001-of-00002.safetensors");
    /* a shard holds a tensor the index does not list */
    put(dir, "model.safetensors.index.json",
        "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"c\": \"model-00002-of-00002.safetensors\"}}");
    expect_ckpt_fails(dir, QD_ERR_FORMAT, "tensor 'b'", "not listed");

    /* pickles only: refused, never opened */
    char pk[512];
    join(pk, sizeof pk, tmpdir, "pickled");
    qd_mkdir_p(pk);
    put(pk, "pytorch_model.bin", "not really a pickle");
    expect_ckpt_fails(pk, QD_ERR_UNSUPPORTED, "never unpickles", "pytorch_model.bin");
    /* nothing at all */
    char empty[512];
    join(empty, sizeof empty, tmpdir, "emptydir");
    qd_mkdir_p(empty);
    expect_ckpt_fails(empty, QD_ERR_IO, "emptydir", "model.safetensors");
    join(p, sizeof p, tmpdir, "no-such-dir");
    expect_ckpt_fails(p, QD_ERR_IO, "no-such-dir", NULL);
    /* a bad shard is reported by its own file name */
    make_sharded(dir);
    join(p, sizeof p, dir, "model-00001-of-00002.safetensors");
    QD_EXPECT_EQ_INT(truncate(p, 30), 0);
    expect_ckpt_fails(dir, QD_ERR_FORMAT, "model-00001-of-00002.safetensors", NULL);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/qd-test-stw-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    QD_RUN(test_roundtrip_all_dtypes);
    QD_RUN(test_sharding);
    QD_RUN(test_f32_conversion);
    QD_RUN(test_outdir);
    QD_RUN(test_checkpoint_dirs);
    qd_rm_rf(tmpdir);
    return QD_TEST_END();
}
