/* SPDX-License-Identifier: MIT
 * qd-scheme.c - scheme names (qd-scheme.h). */
#include "qd-scheme.h"

#include <string.h>

static const char *const names[] = {"wna16", "fp8-dynamic", "fp8-block", "w8a8-int8", "fp8-static", "nvfp4a16", "mxfp4",
                                    "mxfp4-w4a4", "nvfp4"};

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

int qd_scheme_is_fp4(qd_scheme s) { return qd_scheme_is_nvfp4(s) || qd_scheme_is_mxfp4(s); }

int qd_scheme_is_nvfp4(qd_scheme s) { return s == QD_SCHEME_NVFP4A16 || s == QD_SCHEME_NVFP4; }

int qd_scheme_static_act(qd_scheme s) { return s == QD_SCHEME_FP8_STATIC || s == QD_SCHEME_NVFP4; }

int qd_scheme_is_mxfp4(qd_scheme s) { return s == QD_SCHEME_MXFP4 || s == QD_SCHEME_MXFP4_W4A4; }

int qd_scheme_is_float(qd_scheme s) { return qd_scheme_is_fp8(s) || qd_scheme_is_fp4(s); }

int qd_scheme_fp4_group(qd_scheme s) { return qd_scheme_is_nvfp4(s) ? 16 : qd_scheme_is_mxfp4(s) ? 32 : 0; }

int qd_scheme_bits(qd_scheme s) { return s == QD_SCHEME_WNA16 ? 0 : qd_scheme_is_fp4(s) ? 4 : 8; }

int qd_scheme_gptq_targets(qd_scheme s) { return qd_scheme_is_float(s); }
