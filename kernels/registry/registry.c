/* SPDX-License-Identifier: MIT
 * registry.c - backends by name. The only file that knows every backend. */
#include <stdlib.h>
#include <string.h>

#include "qd-backend-cpu.h"
#include "qd-backends.h"
#include "qd-log.h"
#ifdef QD_HAVE_CUDA
#include "qd-backend-cuda.h"
#endif

const char *qd_backend_names(void) {
#ifdef QD_HAVE_CUDA
    return "cpu, cuda, auto";
#else
    return "cpu, auto";
#endif
}

qd_status qd_backend_create(const char *name, qd_backend_t *out) {
    if (!name || strcmp(name, "cpu") == 0) return qd_backend_cpu_create(0, out);
#ifdef QD_HAVE_CUDA
    if (strncmp(name, "cuda", 4) == 0 && (name[4] == 0 || name[4] == ':')) {
        int dev = name[4] == ':' ? atoi(name + 5) : 0;
        return qd_backend_cuda_create(dev, out);
    }
    if (strcmp(name, "auto") == 0) {
        qd_status st = qd_backend_cuda_create(0, out);
        if (st == QD_OK) return st;
        qd_warn("backend: no usable CUDA device (%s); using the CPU backend", qd_last_error());
        qd_clear_error();
        return qd_backend_cpu_create(0, out);
    }
#else
    if (strcmp(name, "auto") == 0) return qd_backend_cpu_create(0, out);
#endif
    return qd_fail(QD_ERR_USAGE, "backend: unknown backend '%s'; this build offers: %s", name, qd_backend_names());
}
