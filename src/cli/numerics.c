/* SPDX-License-Identifier: MIT
 * numerics.c - --numerics fast|exact as a backend-name option (qd-cli-numerics.h). */
#include <stdio.h>
#include <string.h>

#include "qd-cli-numerics.h"

const char *qd_cli_backend_name(const char *backend, const char *numerics, char *buf, size_t cap) {
    if (!numerics || strcmp(numerics, "exact") != 0) return backend;
    snprintf(buf, cap, "%s+exact", backend ? backend : "cpu");
    return buf;
}
