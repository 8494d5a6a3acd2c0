/* SPDX-License-Identifier: MIT
 * qd-scheme.c - scheme names (qd-scheme.h). */
#include "qd-scheme.h"

#include <string.h>

static const char *const names[] = {"wna16", "fp8-dynamic", "fp8-block", "w8a8-int8", "fp8-static"};

const char *qd_scheme_name(qd_scheme s) {
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

int qd_scheme_parse(const char *name, qd_scheme *out) {
    for (unsigned i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (qd_scheme)i;
            return 0;
        }
    return -1;
}

int qd_scheme_is_fp8(qd_scheme s) {
    return s == QD_SCHEME_FP8_DYNAMIC || s == QD_SCHEME_FP8_BLOCK || s == QD_SCHEME_FP8_STATIC;
}
