/* SPDX-License-Identifier: MIT
 * registry.c - backends by name. The only file that knows every backend. */
#include <stdlib.h>
#include <string.h>

#include "qd-backend-cpu.h"
#include "qd-backends.h"
#include "qd-check.h"
#include "qd-log.h"
#ifdef QD_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "qd-backend-cuda.h"
#endif

int qd_backend_gpu_count(void) {
#ifdef QD_HAVE_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver or no device: not an error for the caller */
        return 0;
    }
    return n;
#else
    return 0;
#endif
}

const char *qd_backend_names(void) {
#ifdef QD_HAVE_CUDA
    return "cpu, cuda, auto";
#else
    return "cpu, auto";
#endif
}

static qd_status create_base(const char *name, qd_backend_t *out) {
    if (strcmp(name, "cpu") == 0) return qd_backend_cpu_create(0, out);
#ifdef QD_HAVE_CUDA
    if (strncmp(name, "cuda", 4) == 0 && (name[4] == 0 || name[4] == ':')) {
        int dev = name[4] == ':' ? atoi(name + 5) : 0;
        return qd_backend_cuda_create(dev, out);
    }
    if (strncmp(name, "auto", 4) == 0 && (name[4] == 0 || name[4] == ':')) {
        /* auto is the default: a machine without a GPU is a normal case (info, not an error); a GPU
         * that is there but fails is an error, never a silent run on the CPU */
        if (qd_backend_gpu_count() == 0) {
            qd_info("backend: auto: no CUDA device; using the CPU backend");
            return qd_backend_cpu_create(0, out);
        }
        return qd_backend_cuda_create(name[4] == ':' ? atoi(name + 5) : 0, out);
    }
#else
    if (strncmp(name, "auto", 4) == 0 && (name[4] == 0 || name[4] == ':')) return qd_backend_cpu_create(0, out);
#endif
    return qd_fail(QD_ERR_USAGE, "backend: unknown backend '%s'; this build offers: %s", name, qd_backend_names());
}

/* NAME[+OPTION...]: the options are read before anything is created, so a bad one costs no device */
qd_status qd_backend_create(const char *name, qd_backend_t *out) {
    if (!name) name = "cpu";
    char base[64];
    const char *plus = strchr(name, '+');
    size_t blen = plus ? (size_t)(plus - name) : strlen(name);
    if (blen >= sizeof base) return qd_fail(QD_ERR_USAGE, "backend: name '%s' is too long", name);
    memcpy(base, name, blen);
    base[blen] = 0;
    qd_numerics num = QD_NUMERICS_FAST;
    for (const char *o = plus; o; o = strchr(o + 1, '+')) {
        const char *e = strchr(o + 1, '+');
        size_t n = e ? (size_t)(e - o - 1) : strlen(o + 1);
        if (n == 5 && strncmp(o + 1, "exact", 5) == 0)
            num = QD_NUMERICS_EXACT;
        else if (n == 4 && strncmp(o + 1, "fast", 4) == 0)
            num = QD_NUMERICS_FAST;
        else
            return qd_fail(QD_ERR_USAGE, "backend: unknown option '%.*s' in '%s' (options: +exact, +fast)", (int)n,
                           o + 1, name);
    }
    QD_CHECK(create_base(base, out));
    return qd_be_set_numerics(*out, num);
}
