/* SPDX-License-Identifier: MIT
 * qd-model-internal.h - the inside of qd_model, shared by model-handle.c (open) and model-load.c
 * (the loader). Internal to src/model.
 */
#ifndef QD_MODEL_INTERNAL_H
#define QD_MODEL_INTERNAL_H

#include "qd-arch.h"
#include "qd-model-ckpt.h"

struct qd_model {
    qd_model_cfg cfg;
    qd_checkpoint *ck;
    /* [b * arch->ntensors + i]: block b's tensor of the architecture's table entry i, NULL when the
     * checkpoint stores it otherwise (a quantized Linear) or the config leaves it out */
    const qd_st_tensor **index;
    uint64_t *block_bytes; /* [nlayers] */
    uint64_t total_bytes;
};

/* Block b's tensor of role/slot in the architecture's table (NULL as in index). */
const qd_st_tensor *qd_model_block_tensor(const qd_model *m, int b, qd_tensor_role role, int slot);

#endif
