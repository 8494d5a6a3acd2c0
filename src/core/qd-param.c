/* SPDX-License-Identifier: MIT
 * qd-param.c - the environment tunables' table (qd-param.h). */
#include "qd-param.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-esc.h"
#include "qd-log.h"

const struct qd_param_def qd_param_defs[QD_PARAM_N] = {
#define QD_PARAM_DEF(id, env, values, doc) [QD_PARAM_##id] = {env, values, doc},
    QD_PARAMS(QD_PARAM_DEF)
#undef QD_PARAM_DEF
};

const char *qd_param_str(qd_param p) { return p >= 0 && p < QD_PARAM_N ? getenv(qd_param_defs[p].env) : NULL; }

qd_status qd_param_posint(qd_param p, int max, int *out) {
    *out = 0;
    const char *v = qd_param_str(p);
    if (!v || !*v) return QD_OK;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end || errno || n < 1 || n > max)
        return qd_fail(QD_ERR_USAGE, "%s='%s': expected an integer in 1..%d (docs/tunables.md)", qd_param_defs[p].env,
                       QD_ESC(v), max);
    *out = (int)n;
    return QD_OK;
}

#define QD_PARAM_INT_MAX (1 << 20)

/* v is one of the '|'-separated words of choices */
static int is_choice(const char *v, const char *choices) {
    size_t n = strlen(v);
    for (const char *c = choices; c;) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, v, n) == 0) return 1;
        c = bar ? bar + 1 : NULL;
    }
    return 0;
}

qd_status qd_params_check(void) {
    for (int p = 0; p < QD_PARAM_N; p++) {
        const char *v = qd_param_str((qd_param)p), *values = qd_param_defs[p].values, *env = qd_param_defs[p].env;
        if (!v || !*v || p == QD_PARAM_CUDA_MATH) continue; /* commands ignore it (they take --math) */
        if (strcmp(values, "N > 0") == 0) {
            int n;
            QD_CHECK(qd_param_posint((qd_param)p, QD_PARAM_INT_MAX, &n));
        } else if (strcmp(values, "rank:block") == 0) {
            int r, b, used = 0;
            if (sscanf(v, "%d:%d%n", &r, &b, &used) != 2 || v[used] || r < 0 || b < 0)
                return qd_fail(QD_ERR_USAGE, "%s='%s': expected RANK:BLOCK, two integers >= 0 (docs/tunables.md)", env,
                               QD_ESC(v));
        } else if (strchr(values, '|') && !is_choice(v, values)) {
            return qd_fail(QD_ERR_USAGE, "%s='%s': expected one of %s (docs/tunables.md)", env, QD_ESC(v), values);
        }
    }
    return QD_OK;
}
