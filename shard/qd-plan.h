/* SPDX-License-Identifier: MIT
 * qd-plan.h - the shard plan: which contiguous range of transformer blocks each rank owns.
 *
 * Rank 0 computes it from the checkpoint headers alone (block costs = bytes of each block's
 * tensors) and broadcasts it as the flat int array of qd_plan. The ranges are contiguous, cover every
 * block exactly once, in rank order, and minimise the largest per-rank cost (the first rank also
 * carries `first_extra` - the embedding - and the last `last_extra`). More ranks than blocks is
 * refused: a rank with nothing to do would only add a pipeline hop.
 */
#ifndef QD_PLAN_H
#define QD_PLAN_H

#include <stdint.h>

#include "qd-status.h"

#define QD_PLAN_MAX_RANKS 4096

typedef struct qd_plan {
    int nranks;
    int nblocks;
    int first[QD_PLAN_MAX_RANKS]; /* rank r owns blocks [first[r], first[r] + count[r]) */
    int count[QD_PLAN_MAX_RANKS];
} qd_plan;

qd_status qd_plan_make(int nblocks, const uint64_t *block_cost, uint64_t first_extra, uint64_t last_extra,
                       int nranks, qd_plan *out);
/* The rank owning block b (-1 if out of range). */
int qd_plan_owner(const qd_plan *p, int block);

#endif
