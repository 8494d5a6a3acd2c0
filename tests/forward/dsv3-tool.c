/* SPDX-License-Identifier: MIT
 * dsv3-tool.c - the pieces of DeepSeek-V3 support on raw little-endian fp32 files, for
 * tests/py/test_dsv3_parts.py to compare with transformers:
 *   qd-dsv3-tool rope CONFIG.json SEQ COS.bin SIN.bin   -> cos/sin [SEQ, head_dim/2]; prints the softmax mscale
 *   qd-dsv3-tool route CONFIG.json T LOGITS.bin BIAS.bin IDX.bin W.bin
 *       CONFIG.json holds DeepSeek-V3's routing fields (qd-dsv3.h); LOGITS [T, E], BIAS [E];
 *       IDX [T, top_k] int32 and W [T, top_k] fp32 are written
 *   qd-dsv3-tool dsv3cfg CONFIG.json   -> the parsed DeepSeek-V3 fields as JSON (qd-dsv3.h)
 *   qd-dsv3-tool mla CONFIG.json NSEQ SEQ WDIR X.bin OUT.bin
 *       CONFIG.json: a Llama-form config (hidden_size, num_attention_heads, rope) with DeepSeek-V3's MLA
 *       fields; WDIR/<name>.bin the weights (q_a_proj, q_a_norm, q_b_proj or q_proj, kv_a_proj,
 *       kv_a_norm, kv_b_proj, o_proj, and <name>_bias when present); X [NSEQ*SEQ, hidden] -> OUT, and
 *       each captured Linear input (qd_mla_capture_fn) -> OUT.cap<qd_mla_lin>
 * Exit 0 on success, 1 with qdist's one-line error otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-dsv3.h"
#include "qd-forward.h"
#include "qd-fs.h"
#include "qd-check.h"
#include "qd-log.h"
#include "qd-backend-cpu.h"
#include "qd-mla.h"
#include "qd-route.h"

static qd_status read_exact(const char *path, void *dst, size_t bytes) {
    char *buf;
    size_t len;
    QD_CHECK(qd_read_file(path, bytes + 1, &buf, &len));
    qd_status st = len == bytes ? QD_OK : qd_fail(QD_ERR_FORMAT, "%s: %zu bytes, expected %zu", path, len, bytes);
    if (st == QD_OK) memcpy(dst, buf, bytes);
    free(buf);
    return st;
}

static qd_status write_all(const char *path, const void *src, size_t bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) return qd_fail(QD_ERR_IO, "%s: cannot create", path);
    size_t n = fwrite(src, 1, bytes, f);
    if (fclose(f) != 0 || n != bytes) return qd_fail(QD_ERR_IO, "%s: write failed", path);
    return QD_OK;
}

static qd_status text_of(const char *path, char **out) {
    size_t len;
    return qd_read_file(path, 1u << 20, out, &len);
}

static qd_status rope(char **argv) {
    char *json;
    QD_CHECK(text_of(argv[2], &json));
    qd_model_cfg cfg;
    qd_status st = qd_model_cfg_parse(json, argv[2], &cfg);
    free(json);
    if (st != QD_OK) return st;
    size_t S = (size_t)atol(argv[3]), half = (size_t)cfg.head_dim / 2;
    float *c = malloc(S * half * 4 + 4), *s = malloc(S * half * 4 + 4);
    if (!c || !s) st = qd_fail(QD_ERR_NOMEM, "rope: out of memory");
    if (st == QD_OK) st = qd_rope_tables(&cfg, S, c, s);
    if (st == QD_OK) st = write_all(argv[4], c, S * half * 4);
    if (st == QD_OK) st = write_all(argv[5], s, S * half * 4);
    if (st == QD_OK) printf("%.17g\n", qd_rope_softmax_mscale(&cfg.rope));
    free(c), free(s);
    return st;
}

static qd_status route(char **argv) {
    char *json;
    QD_CHECK(text_of(argv[2], &json));
    qd_dsv3_cfg d;
    qd_status st = qd_dsv3_cfg_parse(json, argv[2], 0, &d);
    free(json);
    if (st != QD_OK) return st;
    qd_route_dsv3 r = {.n_experts = d.n_routed_experts, .top_k = d.num_experts_per_tok, .n_group = d.n_group,
                       .topk_group = d.topk_group, .norm_topk_prob = d.norm_topk_prob,
                       .routed_scaling_factor = (float)d.routed_scaling_factor};
    size_t T = (size_t)atol(argv[3]), E = (size_t)r.n_experts, K = (size_t)r.top_k;
    float *l = malloc(T * E * 4 + 4), *b = malloc(E * 4 + 4), *w = malloc(T * K * 4 + 4);
    int32_t *idx = malloc(T * K * 4 + 4);
    if (!l || !b || !w || !idx) st = qd_fail(QD_ERR_NOMEM, "route: out of memory");
    if (st == QD_OK) st = read_exact(argv[4], l, T * E * 4);
    if (st == QD_OK) st = read_exact(argv[5], b, E * 4);
    if (st == QD_OK) st = qd_route_dsv3_topk(&r, l, b, T, idx, w);
    if (st == QD_OK) st = write_all(argv[6], idx, T * K * 4);
    if (st == QD_OK) st = write_all(argv[7], w, T * K * 4);
    free(l), free(b), free(w), free(idx);
    return st;
}

/* WDIR/name.bin of n floats onto the backend; absent and optional: NULL */
static qd_status weight(qd_backend_t be, const char *dir, const char *name, size_t n, int optional, qd_buf_t *out) {
    char path[1024];
    *out = NULL;
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    if (optional && !qd_path_exists(path)) return QD_OK;
    float *h = malloc(n * 4 + 4);
    if (!h) return qd_fail(QD_ERR_NOMEM, "mla: out of memory");
    qd_status st = read_exact(path, h, n * 4);
    if (st == QD_OK) st = qd_buf_alloc(be, n, out);
    if (st == QD_OK) st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(*out, 0), .src = h,
                                                                   .src_dtype = QD_DT_F32, .n = n});
    free(h);
    return st;
}

/* each captured Linear input to OUT.cap<lin> (rows x cols fp32) */
struct cap_ctx {
    qd_backend_t be;
    const char *out;
};

static qd_status capture(void *user, qd_mla_lin lin, qd_ref x, size_t rows, size_t cols) {
    struct cap_ctx *c = user;
    char path[1100];
    snprintf(path, sizeof path, "%s.cap%d", c->out, (int)lin);
    float *h = malloc(rows * cols * 4 + 4);
    if (!h) return qd_fail(QD_ERR_NOMEM, "mla: out of memory");
    qd_status st = qd_be_download(c->be, &(struct qd_download_args){.src = x, .dst = h, .n = rows * cols});
    if (st == QD_OK) st = write_all(path, h, rows * cols * 4);
    free(h);
    return st;
}

static qd_status mla(char **argv) {
    char *json;
    QD_CHECK(text_of(argv[2], &json));
    qd_model_cfg cfg;
    qd_dsv3_cfg d;
    qd_status st = qd_model_cfg_parse(json, argv[2], &cfg);
    if (st == QD_OK) st = qd_dsv3_cfg_parse(json, argv[2], 0, &d);
    free(json);
    if (st != QD_OK) return st;
    size_t nseq = (size_t)atol(argv[3]), S = (size_t)atol(argv[4]), T = nseq * S, Hd = (size_t)cfg.hidden;
    size_t H = (size_t)cfg.nheads, QK = (size_t)d.qk_head_dim, R = (size_t)d.qk_rope_head_dim;
    size_t QL = (size_t)d.q_lora_rank, KL = (size_t)d.kv_lora_rank, NV = (size_t)(d.qk_nope_head_dim + d.v_head_dim);
    const char *dir = argv[5];
    qd_backend_t be;
    QD_CHECK(qd_backend_cpu_create(0, &be));
    qd_mla_w w = {0};
    qd_buf_t x = NULL, out = NULL, cosb = NULL, sinb = NULL;
    float *hx = malloc(T * Hd * 4 + 4), *c = malloc(S * R * 2 + 4), *s = malloc(S * R * 2 + 4);
    if (!hx || !c || !s) st = qd_fail(QD_ERR_NOMEM, "mla: out of memory");
    if (st == QD_OK && QL) {
        st = weight(be, dir, "q_a_proj", QL * Hd, 0, &w.w[QD_MLA_Q_A]);
        if (st == QD_OK) st = weight(be, dir, "q_a_norm", QL, 0, &w.q_a_norm);
        if (st == QD_OK) st = weight(be, dir, "q_b_proj", H * QK * QL, 0, &w.w[QD_MLA_Q_B]);
        if (st == QD_OK) st = weight(be, dir, "q_a_proj_bias", QL, 1, &w.b[QD_MLA_Q_A]);
    } else if (st == QD_OK) {
        st = weight(be, dir, "q_proj", H * QK * Hd, 0, &w.w[QD_MLA_Q_A]);
    }
    if (st == QD_OK) st = weight(be, dir, "kv_a_proj", (KL + R) * Hd, 0, &w.w[QD_MLA_KV_A]);
    if (st == QD_OK) st = weight(be, dir, "kv_a_proj_bias", KL + R, 1, &w.b[QD_MLA_KV_A]);
    if (st == QD_OK) st = weight(be, dir, "kv_a_norm", KL, 0, &w.kv_a_norm);
    if (st == QD_OK) st = weight(be, dir, "kv_b_proj", H * NV * KL, 0, &w.w[QD_MLA_KV_B]);
    if (st == QD_OK) st = weight(be, dir, "o_proj", Hd * H * (size_t)d.v_head_dim, 0, &w.w[QD_MLA_O]);
    if (st == QD_OK) st = weight(be, dir, "o_proj_bias", Hd, 1, &w.b[QD_MLA_O]);
    if (st == QD_OK) st = read_exact(argv[6], hx, T * Hd * 4);
    if (st == QD_OK) st = qd_rope_tables_dim(&cfg.rope, R, S, c, s);
    if (st == QD_OK) st = qd_buf_alloc(be, T * Hd, &x);
    if (st == QD_OK) st = qd_buf_alloc(be, T * Hd, &out);
    if (st == QD_OK) st = qd_buf_alloc(be, S * R / 2, &cosb);
    if (st == QD_OK) st = qd_buf_alloc(be, S * R / 2, &sinb);
    if (st == QD_OK) st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(x, 0), .src = hx, .src_dtype = QD_DT_F32, .n = T * Hd});
    if (st == QD_OK) st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(cosb, 0), .src = c, .src_dtype = QD_DT_F32, .n = S * R / 2});
    if (st == QD_OK) st = qd_be_upload(be, &(struct qd_upload_args){.dst = QD_REF(sinb, 0), .src = s, .src_dtype = QD_DT_F32, .n = S * R / 2});
    if (st == QD_OK)
        st = qd_mla_forward(be, &(struct qd_mla_args){.c = &d, .hidden = cfg.hidden, .heads = cfg.nheads,
                                                      .scale = (float)(1.0 / sqrt((double)QK) * qd_rope_softmax_mscale(&cfg.rope)),
                                                      .w = &w, .x = QD_REF(x, 0), .out = QD_REF(out, 0),
                                                      .cos = QD_REF(cosb, 0), .sin = QD_REF(sinb, 0), .nseq = nseq,
                                                      .seq_len = S, .capture = capture,
                                                      .user = &(struct cap_ctx){be, argv[7]}});
    if (st == QD_OK) st = qd_be_download(be, &(struct qd_download_args){.src = QD_REF(out, 0), .dst = hx, .n = T * Hd});
    if (st == QD_OK) st = write_all(argv[7], hx, T * Hd * 4);
    for (int i = 0; i < QD_MLA_NLIN; i++) qd_buf_free(w.w[i]), qd_buf_free(w.b[i]);
    qd_buf_free(w.q_a_norm), qd_buf_free(w.kv_a_norm), qd_buf_free(x), qd_buf_free(out), qd_buf_free(cosb),
        qd_buf_free(sinb);
    free(hx), free(c), free(s);
    qd_be_free(be);
    return st;
}

/* the parsed DeepSeek-V3 fields as one JSON line, named as DeepseekV3Config names them */
static qd_status dsv3cfg(char **argv) {
    char *json;
    QD_CHECK(text_of(argv[2], &json));
    qd_dsv3_cfg d;
    qd_status st = qd_dsv3_cfg_parse(json, argv[2], 0, &d);
    free(json);
    if (st != QD_OK) return st;
    printf("{\"q_lora_rank\": %d, \"kv_lora_rank\": %d, \"qk_nope_head_dim\": %d, \"qk_rope_head_dim\": %d, "
           "\"qk_head_dim\": %d, \"v_head_dim\": %d, \"rope_interleave\": %d, \"n_routed_experts\": %d, "
           "\"n_shared_experts\": %d, \"num_experts_per_tok\": %d, \"n_group\": %d, \"topk_group\": %d, "
           "\"norm_topk_prob\": %d, \"routed_scaling_factor\": %.17g, \"first_k_dense_replace\": %d, "
           "\"moe_intermediate_size\": %d}\n", d.q_lora_rank, d.kv_lora_rank, d.qk_nope_head_dim, d.qk_rope_head_dim,
           d.qk_head_dim, d.v_head_dim, d.rope_interleave, d.n_routed_experts, d.n_shared_experts,
           d.num_experts_per_tok, d.n_group, d.topk_group, d.norm_topk_prob, d.routed_scaling_factor,
           d.first_k_dense_replace, d.moe_intermediate_size);
    return QD_OK;
}

int main(int argc, char **argv) {
    qd_status st;
    if (argc == 6 && strcmp(argv[1], "rope") == 0) st = rope(argv);
    else if (argc == 8 && strcmp(argv[1], "route") == 0) st = route(argv);
    else if (argc == 8 && strcmp(argv[1], "mla") == 0) st = mla(argv);
    else if (argc == 3 && strcmp(argv[1], "dsv3cfg") == 0) st = dsv3cfg(argv);
    else {
        fprintf(stderr, "usage: qd-dsv3-tool rope CONFIG SEQ COS SIN | route CONFIG T LOGITS BIAS IDX W\n");
        return 2;
    }
    return st == QD_OK ? 0 : 1;
}
