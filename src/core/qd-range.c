/* SPDX-License-Identifier: MIT */
#include "qd-range.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int plain_number(const char *text, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int qd_range_parse(const char *spec, int (*num)(const char *, double *), double *lo, double *hi) {
    if (!spec) return -1;
    const char *dots = strstr(spec, "..");
    if (!dots) return -1;
    size_t n = (size_t)(dots - spec);
    char left[64];
    if (n == 0 || n >= sizeof left) return -1;
    memcpy(left, spec, n);
    left[n] = 0;
    if (!num) num = plain_number;
    if (num(left, lo) != 0 || num(dots + 2, hi) != 0) return -1;
    return *lo <= *hi ? 0 : -1;
}
