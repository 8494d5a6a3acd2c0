/* SPDX-License-Identifier: MIT
 * dsv3-tool.c - the pieces of DeepSeek-V3 support on raw little-endian fp32 files, for
 * tests/py/test_dsv3_parts.py to compare with transformers:
 *   qd-dsv3-tool rope CONFIG.json SEQ COS.bin SIN.bin   -> cos/sin [SEQ, head_dim/2]; prints the softmax mscale
 *   qd-dsv3-tool route CONFIG.json T LOGITS.bin BIAS.bin IDX.bin W.bin
 *       CONFIG.json holds DeepSeek-V3's routing fields (qd-dsv3.h); LOGITS [T, E], BIAS [E];
 *       IDX [T, top_k] int32 and W [T, top_k] fp32 are written
 * Exit 0 on success, 1 with qdist's one-line error otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-dsv3.h"
#include "qd-forward.h"
#include "qd-fs.h"
#include "qd-check.h"
#include "qd-log.h"
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

int main(int argc, char **argv) {
    qd_status st;
    if (argc == 6 && strcmp(argv[1], "rope") == 0) st = rope(argv);
    else if (argc == 8 && strcmp(argv[1], "route") == 0) st = route(argv);
    else {
        fprintf(stderr, "usage: qd-dsv3-tool rope CONFIG SEQ COS SIN | route CONFIG T LOGITS BIAS IDX W\n");
        return 2;
    }
    return st == QD_OK ? 0 : 1;
}
