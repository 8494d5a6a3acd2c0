/* SPDX-License-Identifier: MIT
 * qd-param.c - the environment tunables' table (qd-param.h). */
#include "qd-param.h"

#include <stdlib.h>

const struct qd_param_def qd_param_defs[QD_PARAM_N] = {
#define QD_PARAM_DEF(id, env, values, doc) [QD_PARAM_##id] = {env, values, doc},
    QD_PARAMS(QD_PARAM_DEF)
#undef QD_PARAM_DEF
};

const char *qd_param_str(qd_param p) { return p >= 0 && p < QD_PARAM_N ? getenv(qd_param_defs[p].env) : NULL; }
