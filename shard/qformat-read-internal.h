/* SPDX-License-Identifier: MIT
 * qformat-read-internal.h - (internal to shard/qformat-read*.c) a compressed-tensors config group as
 * the readers need it, and the float-quantized (qformat-fp8.c) and fp4 (qformat-read-fp4.c) readers. */
#ifndef QD_QFORMAT_READ_INTERNAL_H
#define QD_QFORMAT_READ_INTERNAL_H

#include "qd-qformat-read.h"

typedef struct ct_group {
    int bits, group_size, sym; /* group_size -1: channel */
    int is_float;              /* weights "type": "float" */
    int block;                 /* weights "strategy": "block" */
    int has_act;               /* input_activations is an object (W8A8) */
    int ntargets;
    char **targets;
} ct_group;

/* the group targeting prefix (a name or regex target first, then "Linear"); NULL when none or qf NULL */
const ct_group *qd__ct_group_for(const qd_qformat *qf, const char *prefix);

/* float-quantized: <prefix>.weight F8_E4M3 + .weight_scale (w NULL: the description only) */
qd_status qd__read_ct_fp8(const ct_group *cg, const qd_checkpoint *ck, const char *prefix, float **w, int64_t *pN,
                          int64_t *pK, qd_qlinear_info *info);

/* nvfp4 / mxfp4-pack-quantized: <prefix>.weight_packed U8 + .weight_scale (+ .weight_global_scale) */
qd_status qd__read_ct_fp4(const ct_group *cg, const qd_checkpoint *ck, const char *prefix, float **w, int64_t *pN,
                          int64_t *pK, qd_qlinear_info *info);

#endif
