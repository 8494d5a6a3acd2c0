/* SPDX-License-Identifier: MIT
 * test-h5stage.c - a staged block: the round trip keeps every name, shape, byte and attribute, a
 * rewrite replaces it, its source hashes are kept, a bad block is refused, never staged, and the
 * fallback text keeps its full length (an older staging's 64-byte one is still read). Resume and
 * damaged files: test-h5stage-damage.c; the fingerprint: test-h5stage-fingerprint.c. */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5stage-test-util.h"
#include "qd-fs.h"
#include "qd-h5stage.h"
#include "qd-log.h"
#include "qd-test.h"

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
    if (h5t_begin("h5stage") != 0) return 1;
    QD_RUN(test_round_trip);
    QD_RUN(test_sources);
    QD_RUN(test_write_refuses_bad_block);
    QD_RUN(test_fallback_length);
    h5t_end();
    return QD_TEST_END();
}
