/* SPDX-License-Identifier: MIT
 * test-h5stage-fingerprint.c - the staging directory's fingerprint (shard/h5stage-fingerprint.c,
 * h5stage-sha256.c): SHA-256 against the FIPS 180-2 vectors, a differing fingerprint refused naming the
 * field, a directory that is not a staging directory or not shared refused, and the model's files
 * hashed by name and header. The staged blocks themselves: test-h5stage.c. */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5stage-test-util.h"
#include "qd-fs.h"
#include "qd-h5stage.h"
#include "qd-log.h"
#include "qd-test.h"

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

int main(void) {
    if (h5t_begin("h5stage-fp") != 0) return 1;
    QD_RUN(test_sha256);
    QD_RUN(test_fingerprint);
    QD_RUN(test_fingerprint_model);
    h5t_end();
    return QD_TEST_END();
}
