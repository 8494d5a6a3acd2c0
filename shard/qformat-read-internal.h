/* SPDX-License-Identifier: MIT
 * qformat-read-internal.h - (internal to shard/qformat-read*.c, qformat-fp8.c, qformat-check.c) a
 * compressed-tensors config group as the readers need it, the float-quantized (qformat-fp8.c) and fp4
 * (qformat-read-fp4.c) readers, and the checks every reader shares (qformat-check.c). */
#ifndef QD_QFORMAT_READ_INTERNAL_H
#define QD_QFORMAT_READ_INTERNAL_H

#include <stddef.h>

#include "qd-qformat-read.h"

struct cJSON;

typedef struct ct_group {
    int bits, group_size, sym; /* bits 0: no num_bits; group_size -1: none */
    int is_float;              /* weights "type": "float" ("int" when absent, compressed-tensors' default) */
    int block;                 /* weights "strategy": "block" */
    int has_act;               /* input_activations is an object (W8A8) */
    int act_static;            /* input_activations "dynamic": false (a stored input scale) */
    int act_local;             /* input_activations "dynamic": "local" (nvfp4: a stored input global scale) */
    int block_structure[2];    /* weights "block_structure"; {0, 0} when absent */
    char type[16];             /* weights "type" as written ("" when absent) */
    char strategy[16];         /* weights "strategy" as written ("" when absent) */
    char format[32];           /* the group's "format", else the config's unless "mixed-precision" ("" if none) */
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

/* config_groups of quantization_config q (cJSON *) into *out (qd__ct_groups_free), path for messages; a
 * field of the wrong type fails naming it (qformat-ct-config.c) */
qd_status qd__ct_groups_parse(const struct cJSON *q, const char *path, ct_group **out, int *n);
void qd__ct_groups_free(ct_group *groups, int n);

/* ---- qformat-check.c ---- */

/* the path of the safetensors file that holds t (for messages) */
const char *qd__tensor_file(const qd_checkpoint *ck, const qd_st_tensor *t);

/* every value of scale tensor t (v: its n values as fp32) finite, and >= 0 when nonneg; else one line
 * naming the tensor, its file and the first bad element */
qd_status qd__scales_check(const qd_checkpoint *ck, const qd_st_tensor *t, const float *v, size_t n, int nonneg);

/* what a compressed-tensors Linear's tensors are, by their dtypes */
typedef enum { QD_CT_FP8, QD_CT_INT8, QD_CT_PACKED, QD_CT_NVFP4, QD_CT_MXFP4 } qd_ct_kind;

/* The one check of a compressed-tensors config group against the tensors of Linear prefix (weight
 * [N][K] of `bits` bits, scale ts): format, type, num_bits, strategy, group_size / block_structure
 * against the scale's shape (the static input scale, which no reader needs, is qd_qformat_check_linear's).
 * Sets *bn x *bk, the rows and columns of the weight one scale covers. Without a group (cg NULL) the
 * scale's shape alone decides (FP8: [N,1] per row, one value per tensor, else 128 x 128 blocks; the
 * others: [N, G] groups of ceil(K / G)). A contradiction fails naming config.json, the module and what
 * the tensors are (QD_ERR_FORMAT). */
qd_status qd__ct_layout(const ct_group *cg, const qd_checkpoint *ck, const char *prefix, qd_ct_kind kind, int bits,
                        int64_t N, int64_t K, const qd_st_tensor *ts, int64_t *bn, int64_t *bk);

#endif
