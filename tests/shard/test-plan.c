/* SPDX-License-Identifier: MIT
 * The shard plan: contiguous, complete, every rank busy, and its largest load equal to the optimum
 * found by brute force over all split points (small cases). */
#include <stdint.h>
#include <stdlib.h>

#include "qd-log.h"
#include "qd-plan.h"
#include "qd-test.h"

static uint64_t max_load(const qd_plan *p, const uint64_t *c, uint64_t fe, uint64_t le) {
    uint64_t worst = 0;
    for (int r = 0; r < p->nranks; r++) {
        uint64_t l = (r == 0 ? fe : 0) + (r == p->nranks - 1 ? le : 0);
        for (int b = p->first[r]; b < p->first[r] + p->count[r]; b++) l += c[b];
        if (l > worst) worst = l;
    }
    return worst;
}

/* optimum over all ways to cut n blocks into k non-empty contiguous ranges */
static uint64_t brute(const uint64_t *c, int n, int k, int start, int r, uint64_t fe, uint64_t le) {
    if (r == k - 1) {
        uint64_t l = (r == 0 ? fe : 0) + le;
        for (int b = start; b < n; b++) l += c[b];
        return l;
    }
    uint64_t best = UINT64_MAX;
    for (int end = start + 1; end <= n - (k - 1 - r); end++) {
        uint64_t l = r == 0 ? fe : 0;
        for (int b = start; b < end; b++) l += c[b];
        uint64_t rest = brute(c, n, k, end, r + 1, fe, le);
        uint64_t m = l > rest ? l : rest;
        if (m < best) best = m;
    }
    return best;
}

static void test_properties(void) {
    srand(7);
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + rand() % 10, k = 1 + rand() % n;
        uint64_t c[16], fe = (uint64_t)(rand() % 5), le = (uint64_t)(rand() % 5);
        for (int b = 0; b < n; b++) c[b] = 1 + (uint64_t)(rand() % 9);
        qd_plan p;
        QD_EXPECT_EQ_INT(qd_plan_make(n, c, fe, le, k, &p), QD_OK);
        int next = 0;
        for (int r = 0; r < k; r++) {
            QD_EXPECT_EQ_INT(p.first[r], next);
            QD_EXPECT(p.count[r] >= 1);
            next += p.count[r];
        }
        QD_EXPECT_EQ_INT(next, n);
        QD_EXPECT_EQ_INT(max_load(&p, c, fe, le), brute(c, n, k, 0, 0, fe, le));
        QD_EXPECT_EQ_INT(qd_plan_owner(&p, n - 1), k - 1);
    }
}

static void test_uniform_80_blocks(void) {
    uint64_t c[80];
    for (int b = 0; b < 80; b++) c[b] = 100;
    qd_plan p;
    QD_EXPECT_EQ_INT(qd_plan_make(80, c, 0, 0, 8, &p), QD_OK);
    for (int r = 0; r < 8; r++) QD_EXPECT_EQ_INT(p.count[r], 10);
}

static void test_refusals(void) {
    uint64_t c[4] = {1, 1, 1, 1};
    qd_plan p;
    QD_EXPECT_EQ_INT(qd_plan_make(4, c, 0, 0, 5, &p), QD_ERR_USAGE);
    QD_EXPECT_STR_CONTAINS(qd_last_error(), "only 4 blocks");
    QD_EXPECT_EQ_INT(qd_plan_make(4, c, 0, 0, 0, &p), QD_ERR_USAGE);
}

int main(void) {
    QD_RUN(test_properties);
    QD_RUN(test_uniform_80_blocks);
    QD_RUN(test_refusals);
    return QD_TEST_END();
}
