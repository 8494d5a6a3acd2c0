/* SPDX-License-Identifier: MIT
 * qd-model-json.h - config.json field readers shared by model-config.c and the arch-<name>.c files.
 * A missing (or null) field takes def; a present one of the wrong type or range fails with one line
 * naming path and the field. Internal to src/model.
 */
#ifndef QD_MODEL_JSON_H
#define QD_MODEL_JSON_H

#include "qd-status.h"

struct cJSON;

/* positive integer; def < 0 means required */
qd_status qd_cfg_int(const struct cJSON *o, const char *name, int def, const char *path, int *out);
qd_status qd_cfg_bool(const struct cJSON *o, const char *name, int def, const char *path, int *out);

struct qd_model_cfg;
/* quantization_config q of a model: an FP8 source (quant_method "fp8", or compressed-tensors whose every
 * weight scheme is 8-bit float) sets fp8_source and fp8_block and clears quantized; others are left as
 * they are (model-config-fp8.c). */
qd_status qd_cfg_fp8_source(const struct cJSON *q, const char *path, struct qd_model_cfg *c);

#endif
