/* SPDX-License-Identifier: MIT
 * test-h5stage.c - a staged block: the round trip keeps every name, shape, byte and attribute, a
 * rewrite replaces it, its source hashes are kept, and a bad block is refused, never staged. Resume
 * and damaged files: test-h5stage-damage.c; the fingerprint: test-h5stage-fingerprint.c. */
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
    qd_fingerprint fp;
    make_fp(&fp, "{\"method\":\"gptq\"}");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fp, 0, &s), QD_OK);
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
            QD_EXPECT(strcmp(a->name, c->name) == 0); /* order kept (not alphabetical) */
            QD_EXPECT_EQ_INT(c->N, a->N);
            QD_EXPECT_EQ_INT(c->K, a->K);
            QD_EXPECT_EQ_INT(c->G, a->G);
            QD_EXPECT_EQ_INT(c->bits, a->bits);
            QD_EXPECT_EQ_INT(c->group_size, a->group_size);
            QD_EXPECT_EQ_INT(c->sym, a->sym);
            QD_EXPECT(memcmp(a->codes, c->codes, (size_t)(a->N * a->K)) == 0);
            QD_EXPECT(memcmp(a->scales, c->scales, sizeof(float) * (size_t)(a->G * a->N)) == 0);
            QD_EXPECT(memcmp(a->zeros, c->zeros, sizeof(int32_t) * (size_t)(a->G * a->N)) == 0);
            QD_EXPECT(memcmp(a->g_idx, c->g_idx, sizeof(int32_t) * (size_t)a->K) == 0);
            QD_EXPECT(a->loss == c->loss && a->damp == c->damp && a->time_s == c->time_s);
            QD_EXPECT(strcmp(a->fallback, c->fallback) == 0);
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
    b.modules[0].codes[0] ^= 1;
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_OK);
    QD_EXPECT_EQ_INT(qd_stage_read_block(s, 12, &r), QD_OK);
    if (r) QD_EXPECT_EQ_INT(r->modules[0].codes[0], b.modules[0].codes[0]);
    qd_staged_block_free(r);
    free_block(&b);
    qd_stage_close(s);
    qd_fp_free(&fp);
}

static void test_write_refuses_bad_block(void) {
    char dir[300];
    subdir(dir, sizeof dir, "bad");
    qd_fingerprint fp;
    make_fp(&fp, "r");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fp, 0, &s), QD_OK);
    if (!s) return;
    qd_staged_block b = make_block(0);
    b.modules[1].codes[7] = 8; /* 3-bit module */
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "mlp.down_proj");
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "codes[0,7] = 8");
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 0), 0);
    b.modules[1].codes[7] = 1;
    snprintf(b.modules[2].name, sizeof b.modules[2].name, "self_attn.q_proj");
    QD_EXPECT_EQ_INT(qd_stage_write_block(s, &b), QD_ERR_FORMAT);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "appears twice");
    QD_EXPECT_EQ_INT(qd_stage_has_block(s, 0), 0);
    free_block(&b);
    qd_stage_close(s);
    qd_fp_free(&fp);
}

/* the source hashes a block records (/sources): kept byte for byte; absent when none were given */
static void test_sources(void) {
    char dir[300];
    subdir(dir, sizeof dir, "src");
    qd_fingerprint fp;
    make_fp(&fp, "{\"method\":\"rtn\"}");
    qd_stage *s = NULL;
    QD_EXPECT_EQ_INT(qd_stage_open(dir, &fp, 0, &s), QD_OK);
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
    qd_fp_free(&fp);
}

int main(void) {
    if (h5t_begin("h5stage") != 0) return 1;
    QD_RUN(test_round_trip);
    QD_RUN(test_sources);
    QD_RUN(test_write_refuses_bad_block);
    h5t_end();
    return QD_TEST_END();
}
