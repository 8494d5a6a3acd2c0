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
    /* [b * ntper + i], i < nbt[b]: block b's tensor i (qd_model_block_tensors) and the checkpoint's
     * tensor of that name, NULL when the checkpoint stores it otherwise (a quantized Linear) */
    size_t ntper;
    size_t *nbt;
    qd_block_tensor_ref *refs;
    const qd_st_tensor **index;
    uint64_t *block_bytes; /* [nlayers] */
    uint64_t total_bytes;
};

#endif
