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

#endif
