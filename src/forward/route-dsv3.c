/* SPDX-License-Identifier: MIT
 * route-dsv3.c - DeepSeek-V3's group-limited top-k routing (contract in qd-route.h). */
#include "qd-route.h"

#include <math.h>
#include <stdlib.h>

#include "qd-check.h"
#include "qd-log.h"

/* the k largest of v[0..n) not excluded (excl[i] != 0), by decreasing value, lower index first on ties:
 * one pass, each value inserted into the sorted list of the best so far (O(n k), k is small) */
static void topk(const float *v, const unsigned char *excl, int n, int k, int32_t *out) {
    int have = 0;
    for (int i = 0; i < n; i++) {
        if (excl && excl[i]) continue;
        if (have == k && !(v[i] > v[out[k - 1]])) continue;
        int j = have < k ? have++ : k - 1;
        for (; j > 0 && v[i] > v[out[j - 1]]; j--) out[j] = out[j - 1];
        out[j] = i;
    }
    for (int j = have; j < k; j++) out[j] = -1; /* fewer candidates than k: the caller's checks prevent it */
}

static qd_status check(const qd_route_dsv3 *c) {
    int E = c->n_experts, G = c->n_group;
    if (E < 2 || G < 1 || E % G || E / G < 2 || c->topk_group < 1 || c->topk_group > G || c->top_k < 1 ||
        c->top_k > c->topk_group * (E / G) || !(c->routed_scaling_factor > 0) || !isfinite(c->routed_scaling_factor))
        return qd_fail(QD_ERR_INTERNAL, "route: invalid DeepSeek-V3 routing (%d experts, %d groups, top %d groups, "
                       "top %d, scaling %g)", E, G, c->topk_group, c->top_k, (double)c->routed_scaling_factor);
    return QD_OK;
}

qd_status qd_route_dsv3_topk(const qd_route_dsv3 *c, const float *logits, const float *bias, size_t T, int32_t *idx,
                             float *w) {
    QD_CHECK(check(c));
    const int E = c->n_experts, G = c->n_group, per = E / G, K = c->top_k;
    for (int e = 0; bias && e < E; e++)
        if (!isfinite(bias[e])) return qd_fail(QD_ERR_FORMAT, "route: e_score_correction_bias[%d] is not finite", e);
    float *score = malloc(sizeof *score * (size_t)E), *choice = malloc(sizeof *choice * (size_t)E);
    float *gscore = malloc(sizeof *gscore * (size_t)G);
    unsigned char *excl = malloc((size_t)E);
    int32_t *gsel = malloc(sizeof *gsel * (size_t)G), top2[2];
    qd_status st = QD_OK;
    if (!score || !choice || !gscore || !excl || !gsel) st = qd_fail(QD_ERR_NOMEM, "route: out of memory for %d experts", E);
    for (size_t t = 0; st == QD_OK && t < T; t++) {
        const float *l = logits + t * (size_t)E;
        for (int e = 0; e < E; e++) {
            if (!isfinite(l[e])) {
                st = qd_fail(QD_ERR_FORMAT, "route: router logit of token %zu, expert %d is not finite", t, e);
                break;
            }
            score[e] = 1.0f / (1.0f + expf(-l[e]));
            choice[e] = score[e] + (bias ? bias[e] : 0.0f);
        }
        if (st != QD_OK) break;
        for (int g = 0; g < G; g++) {
            topk(choice + g * per, NULL, per, 2, top2);
            gscore[g] = choice[g * per + top2[0]] + choice[g * per + top2[1]];
        }
        topk(gscore, NULL, G, c->topk_group, gsel);
        for (int e = 0; e < E; e++) excl[e] = 1;
        for (int j = 0; j < c->topk_group; j++)
            for (int e = gsel[j] * per; e < (gsel[j] + 1) * per; e++) excl[e] = 0;
        int32_t *ti = idx + t * (size_t)K;
        float *tw = w + t * (size_t)K, sum = 0;
        topk(choice, excl, E, K, ti);
        for (int j = 0; j < K; j++) tw[j] = score[ti[j]], sum += tw[j];
        for (int j = 0; j < K; j++) {
            if (c->norm_topk_prob) tw[j] /= sum + 1e-20f;
            tw[j] *= c->routed_scaling_factor;
        }
    }
    free(score), free(choice), free(gscore), free(excl), free(gsel);
    return st;
}
