/* SPDX-License-Identifier: MIT
 * test-model-handle.c - the model handle and loader (src/model/qd-model-handle.h) on the bundled
 * stories260K (a Llama, 5 blocks, tied embedding, fp32) over the CPU backend: the block costs add up
 * to the checkpoint, a loaded block holds each tensor of the architecture's table at its shape with
 * the checkpoint's values, the embedding gathers rows, and misuse is refused with an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-backend-cpu.h"
#include "qd-model-ckpt.h"
#include "qd-test.h"

static qd_backend_t be;
static char dir[4096]; /* the fixture */

/* every element of buffer b equals tensor name of the checkpoint (read independently, as fp32) */
static int same_as_ckpt(const qd_checkpoint *ck, const char *name, qd_buf_t b) {
    const qd_st_tensor *t = qd_ckpt_find(ck, name);
    if (!t || !b) return 0;
    float *want = malloc(t->numel * sizeof *want), *got = malloc(t->numel * sizeof *got);
    int ok = want && got && qd_ckpt_read_f32(ck, t, want) == QD_OK &&
             qd_be_download(be, &(struct qd_download_args){.src = QD_REF(b, 0), .dst = got, .n = t->numel}) == QD_OK &&
             memcmp(want, got, t->numel * sizeof *got) == 0;
    free(want), free(got);
    return ok;
}

static void test_open_and_costs(void) {
    qd_model *m;
    QD_EXPECT_EQ_INT(qd_model_open(dir, 0, &m), QD_OK);
    const qd_model_cfg *c = qd_model_cfg_of(m);
    QD_EXPECT_EQ_INT(c->nlayers, 5);
    const qd_checkpoint *ck = qd_model_ckpt(m);
    uint64_t blocks = 0, rest = 0;
    for (int b = 0; b < c->nlayers; b++) blocks += qd_model_block_bytes(m, b);
    for (size_t i = 0; i < ck->ntensors; i++)
        if (strncmp(ck->tensors[i]->name, "model.layers.", 13) != 0) rest += ck->tensors[i]->nbytes;
    QD_EXPECT(blocks > 0 && blocks + rest == qd_model_total_bytes(m));
    /* a block's fp32 Linears and norms: 4 * (sum of N*K + 2 * hidden) */
    uint64_t want = 0;
    for (int l = 0; l < QD_NLIN; l++) {
        int64_t N, K;
        qd_model_linear_shape(c, (qd_lin)l, &N, &K);
        want += (uint64_t)(N * K) * 4;
    }
    want += 2 * (uint64_t)c->hidden * 4;
    QD_EXPECT(qd_model_block_bytes(m, 0) == want);
    QD_EXPECT(qd_model_block_bytes(m, 5) == 0 && qd_model_block_bytes(m, -1) == 0);
    /* loading needs the data */
    qd_block_w w;
    QD_EXPECT_EQ_INT(qd_model_block_load(be, m, 0, &w), QD_ERR_INTERNAL);
    qd_model_close(m);
}

static void test_load(void) {
    qd_model *m;
    QD_EXPECT_EQ_INT(qd_model_open(dir, 1, &m), QD_OK);
    const qd_model_cfg *c = qd_model_cfg_of(m);
    const qd_checkpoint *ck = qd_model_ckpt(m);
    qd_block_w w;
    QD_EXPECT_EQ_INT(qd_model_block_load(be, m, 4, &w), QD_OK);
    char name[128];
    for (int l = 0; l < QD_NLIN; l++) {
        int64_t N, K;
        qd_model_linear_shape(c, (qd_lin)l, &N, &K);
        QD_EXPECT(w.n_out[l] == (size_t)N && w.n_in[l] == (size_t)K && w.b[l] == NULL);
        snprintf(name, sizeof name, "model.layers.4.%s.weight", qd_lin_name((qd_lin)l));
        QD_EXPECT(same_as_ckpt(ck, name, w.w[l]));
    }
    QD_EXPECT(same_as_ckpt(ck, "model.layers.4.post_attention_layernorm.weight", w.ln_post));
    QD_EXPECT(w.q_norm == NULL && w.k_norm == NULL); /* Llama has no q/k norm */
    qd_block_w_free(&w);
    QD_EXPECT_EQ_INT(qd_model_block_load(be, m, 5, &w), QD_ERR_INTERNAL); /* no block 5 */

    qd_head h;
    QD_EXPECT_EQ_INT(qd_model_head_load(be, m, 1, &h), QD_OK);
    QD_EXPECT(same_as_ckpt(ck, "model.embed_tokens.weight", h.lm_head)); /* tied */
    const int32_t ids[2] = {7, 300};
    qd_buf_t x;
    QD_EXPECT_EQ_INT(qd_buf_alloc(be, 2 * (size_t)c->hidden, &x), QD_OK);
    QD_EXPECT_EQ_INT(qd_embed(be, &h, ids, 2, QD_REF(x, 0)), QD_OK);
    float *rows = malloc(2 * (size_t)c->hidden * sizeof *rows), *emb = malloc((size_t)c->vocab * c->hidden * sizeof *emb);
    qd_be_download(be, &(struct qd_download_args){.src = QD_REF(x, 0), .dst = rows, .n = 2 * (size_t)c->hidden});
    qd_ckpt_read_f32(ck, qd_ckpt_find(ck, "model.embed_tokens.weight"), emb);
    QD_EXPECT(memcmp(rows, emb + 7 * c->hidden, c->hidden * sizeof *rows) == 0);
    QD_EXPECT(memcmp(rows + c->hidden, emb + 300 * c->hidden, c->hidden * sizeof *rows) == 0);
    const int32_t bad = 512;
    QD_EXPECT_EQ_INT(qd_embed(be, &h, &bad, 1, QD_REF(x, 0)), QD_ERR_FORMAT); /* outside the vocabulary */
    free(rows), free(emb);
    qd_buf_free(x);
    qd_head_free(&h);
    qd_model_close(m);
}

int main(void) {
    if (!qd_fixture(dir, sizeof dir, "stories260K-hf")) return QD_TEST_END();
    if (qd_backend_cpu_create(0, &be) != QD_OK) return 1;
    QD_RUN(test_open_and_costs);
    QD_RUN(test_load);
    qd_model *m = NULL;
    QD_EXPECT_EQ_INT(qd_model_open("/nonexistent-qdist-model", 1, &m), QD_ERR_IO);
    QD_EXPECT(m == NULL);
    qd_be_free(be);
    return QD_TEST_END();
}
