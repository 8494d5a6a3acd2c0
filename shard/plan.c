/* SPDX-License-Identifier: MIT
 * plan.c - the shard plan (qd-plan.h): a linear partition by binary search on the largest load. Greedy
 * filling is optimal for a given cap, so the smallest feasible cap gives the balanced plan. */
#include "qd-plan.h"

#include <string.h>

#include "qd-log.h"

/* Greedy fill under cap; returns the number of ranks used (or nranks+1 if infeasible). */
static int fill(int nblocks, const uint64_t *cost, uint64_t first_extra, uint64_t last_extra, int nranks,
                uint64_t cap, int *first, int *count) {
    int r = 0, b = 0;
    while (b < nblocks) {
        if (r >= nranks) return nranks + 1;
        uint64_t load = r == 0 ? first_extra : 0;
        int start = b;
        /* the last rank carries last_extra; reserve it when this rank might end up last */
        while (b < nblocks) {
            uint64_t extra = (r == nranks - 1) ? last_extra : 0;
            if (load + cost[b] + extra > cap && b > start) break;
            if (load + cost[b] + extra > cap) return nranks + 1; /* one block above the cap */
            load += cost[b];
            b++;
            /* leave at least one block for each remaining rank */
            if (nblocks - b == nranks - 1 - r) break;
        }
        first[r] = start;
        count[r] = b - start;
        r++;
    }
    return r;
}

qd_status qd_plan_make(int nblocks, const uint64_t *block_cost, uint64_t first_extra, uint64_t last_extra,
                       int nranks, qd_plan *out) {
    memset(out, 0, sizeof *out);
    if (nranks < 1 || nranks > QD_PLAN_MAX_RANKS)
        return qd_fail(QD_ERR_USAGE, "plan: %d ranks; expected 1..%d", nranks, QD_PLAN_MAX_RANKS);
    if (nblocks < 1) return qd_fail(QD_ERR_FORMAT, "plan: the model has no transformer blocks");
    if (nranks > nblocks)
        return qd_fail(QD_ERR_USAGE, "plan: %d ranks but the model has only %d blocks; run with at most %d ranks",
                       nranks, nblocks, nblocks);
    uint64_t lo = 0, hi = first_extra + last_extra;
    for (int b = 0; b < nblocks; b++) {
        hi += block_cost[b];
        if (block_cost[b] > lo) lo = block_cost[b];
    }
    int first[QD_PLAN_MAX_RANKS], count[QD_PLAN_MAX_RANKS];
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (fill(nblocks, block_cost, first_extra, last_extra, nranks, mid, first, count) <= nranks)
            hi = mid;
        else
            lo = mid + 1;
    }
    int used = fill(nblocks, block_cost, first_extra, last_extra, nranks, lo, first, count);
    if (used > nranks) return qd_fail(QD_ERR_INTERNAL, "plan: no feasible partition found");
    /* every rank gets at least one block: split the last ranges if greedy used fewer ranks */
    while (used < nranks) {
        int widest = 0;
        for (int r = 1; r < used; r++)
            if (count[r] > count[widest]) widest = r;
        for (int r = used; r > widest + 1; r--) {
            first[r] = first[r - 1];
            count[r] = count[r - 1];
        }
        int half = count[widest] / 2;
        first[widest + 1] = first[widest] + (count[widest] - half);
        count[widest + 1] = half;
        count[widest] -= half;
        used++;
    }
    out->nranks = nranks;
    out->nblocks = nblocks;
    memcpy(out->first, first, sizeof(int) * (size_t)nranks);
    memcpy(out->count, count, sizeof(int) * (size_t)nranks);
    return QD_OK;
}

int qd_plan_owner(const qd_plan *p, int block) {
    for (int r = 0; r < p->nranks; r++)
        if (block >= p->first[r] && block < p->first[r] + p->count[r]) return r;
    return -1;
}
