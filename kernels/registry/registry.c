/* SPDX-License-Identifier: MIT
 * registry.c - backend choice (qd-backends.h). The only file that knows every backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* "cuda" / "cuda:N" style: base is the kind's word; *dev is N or QD_DEVICE_ANY */
static int match_kind(const char *name, size_t len, const char *word, int *dev) {
    size_t w = strlen(word);
    if (len < w || strncmp(name, word, w) != 0) return 0;
    if (len == w) {
        *dev = QD_DEVICE_ANY;
        return 1;
    }
    if (name[w] != ':' || len == w + 1) return 0;
    int d = 0;
    for (size_t i = w + 1; i < len; i++) {
        if (name[i] < '0' || name[i] > '9' || d > 100000) return 0;
        d = 10 * d + (name[i] - '0');
    }
    *dev = d;
    return 1;
}

static const char *const math_names[] = {"auto", "fp32", "tf32", "bf16"};

const char *qd_math_name(qd_math m) {
    return (unsigned)m < sizeof math_names / sizeof math_names[0] ? math_names[m] : "?";
}

/* the 4-letter math word at w (not NUL-terminated) */
static int math_of(const char *w, qd_math *out) {
    for (int m = QD_MATH_FP32; m <= QD_MATH_BF16; m++)
        if (strncmp(w, math_names[m], 4) == 0) return *out = (qd_math)m, 1;
    return 0;
}

qd_status qd_backend_spec_set_math(qd_backend_spec *s, const char *math, qd_dtype weights) {
    qd_math m = QD_MATH_AUTO;
    if (math && strcmp(math, "auto") != 0 && !(strlen(math) == 4 && math_of(math, &m)))
        return qd_fail(QD_ERR_USAGE, "--math: '%s' is not allowed; expected one of auto|fp32|tf32|bf16", math);
    if (m == QD_MATH_AUTO) m = s->math; /* "+bf16" in the backend name, when --math is auto */
    if (m == QD_MATH_AUTO) m = weights == QD_DT_BF16 || weights == QD_DT_F16 ? QD_MATH_BF16 : QD_MATH_FP32;
    s->math = m;
    return QD_OK;
}

qd_status qd_backend_spec_parse(const char *name, const char *numerics, qd_backend_spec *out) {
    if (!name) name = "cpu";
    const char *plus = strchr(name, '+');
    size_t blen = plus ? (size_t)(plus - name) : strlen(name);
    qd_backend_spec s = {.kind = QD_BACKEND_CPU, .device = QD_DEVICE_ANY, .numerics = QD_NUMERICS_FAST};
    int dev = QD_DEVICE_ANY;
    if (blen == 3 && strncmp(name, "cpu", 3) == 0)
        s.kind = QD_BACKEND_CPU;
#ifdef QD_HAVE_CUDA
    else if (match_kind(name, blen, "cuda", &dev))
        s.kind = QD_BACKEND_CUDA, s.device = dev;
#endif
    else if (match_kind(name, blen, "auto", &dev))
        s.kind = QD_BACKEND_AUTO, s.device = dev;
    else
        return qd_fail(QD_ERR_USAGE, "backend: unknown backend '%.*s'; this build offers: %s", (int)blen, name,
                       qd_backend_names());
    for (const char *o = plus; o; o = strchr(o + 1, '+')) {
        const char *e = strchr(o + 1, '+');
        size_t n = e ? (size_t)(e - o - 1) : strlen(o + 1);
        if (n == 5 && strncmp(o + 1, "exact", 5) == 0)
            s.numerics = QD_NUMERICS_EXACT;
        else if (n == 4 && strncmp(o + 1, "fast", 4) == 0)
            s.numerics = QD_NUMERICS_FAST;
        else if (n == 4 && math_of(o + 1, &s.math))
            ;
        else
            return qd_fail(QD_ERR_USAGE,
                           "backend: unknown option '%.*s' in '%s' (options: +exact, +fast, +fp32, +tf32, +bf16)",
                           (int)n, o + 1, name);
    }
    if (numerics && strcmp(numerics, "exact") == 0)
        s.numerics = QD_NUMERICS_EXACT;
    else if (numerics && strcmp(numerics, "fast") != 0)
        return qd_fail(QD_ERR_USAGE, "backend: numerics '%s' (expected fast or exact)", numerics);
    *out = s;
    return QD_OK;
}

const char *qd_backend_spec_name(const qd_backend_spec *s, char *buf, size_t cap) {
    const char *k = s->kind == QD_BACKEND_CUDA ? "cuda" : s->kind == QD_BACKEND_AUTO ? "auto" : "cpu";
    char dev[16] = "";
    if (s->kind != QD_BACKEND_CPU && s->device != QD_DEVICE_ANY) snprintf(dev, sizeof dev, ":%d", s->device);
    snprintf(buf, cap, "%s%s%s%s%s", k, dev, s->numerics == QD_NUMERICS_EXACT ? "+exact" : "",
             s->math != QD_MATH_AUTO ? "+" : "", s->math != QD_MATH_AUTO ? qd_math_name(s->math) : "");
    return buf;
}

int qd_backend_spec_is_gpu(const qd_backend_spec *s) {
    if (s->kind == QD_BACKEND_CUDA) return 1;
    return s->kind == QD_BACKEND_AUTO && qd_backend_gpu_count() > 0;
}

static qd_status open_kind(const qd_backend_spec *s, qd_backend_t *out) {
    int dev = s->device == QD_DEVICE_ANY ? 0 : s->device;
    switch (s->kind) {
    case QD_BACKEND_CPU:
        return qd_backend_cpu_create(0, out);
    case QD_BACKEND_CUDA:
#ifdef QD_HAVE_CUDA
        return qd_backend_cuda_create_math(dev, s->math, out);
#else
        return qd_fail(QD_ERR_USAGE, "backend: unknown backend 'cuda'; this build offers: %s", qd_backend_names());
#endif
    case QD_BACKEND_AUTO:
#ifdef QD_HAVE_CUDA
        /* auto is the default: a machine without a GPU is a normal case (info, not an error); a GPU
         * that is there but fails is an error, never a silent run on the CPU */
        if (qd_backend_gpu_count() == 0) {
            qd_info("backend: auto: no CUDA device; using the CPU backend");
            return qd_backend_cpu_create(0, out);
        }
        return qd_backend_cuda_create_math(dev, s->math, out);
#else
        (void)dev;
        return qd_backend_cpu_create(0, out);
#endif
    }
    return qd_fail(QD_ERR_INTERNAL, "backend: kind %d is not a backend", (int)s->kind);
}

qd_status qd_backend_open(const qd_backend_spec *s, qd_backend_t *out) {
    QD_CHECK(open_kind(s, out));
    return qd_be_set_numerics(*out, s->numerics);
}

qd_status qd_backend_create(const char *name, qd_backend_t *out) {
    qd_backend_spec s;
    QD_CHECK(qd_backend_spec_parse(name, NULL, &s));
    return qd_backend_open(&s, out);
}

qd_status qd_backend_devices(qd_device_info *out, int cap, int *n) {
    *n = 0;
    if (cap < 1) return QD_OK;
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    out[0] = (qd_device_info){.kind = QD_BACKEND_CPU, .device = 0,
                              .total_bytes = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0,
                              .free_bytes = avail > 0 && psz > 0 ? (uint64_t)avail * (uint64_t)psz : 0};
    snprintf(out[0].name, sizeof out[0].name, "cpu");
    *n = 1;
#ifdef QD_HAVE_CUDA
    int g = qd_backend_gpu_count();
    for (int d = 0; d < g && *n < cap; d++) {
        struct cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, d) != cudaSuccess)
            return qd_fail(QD_ERR_CUDA, "backend: cuda device %d: reading its properties failed: %s", d,
                           cudaGetErrorString(cudaGetLastError()));
        qd_device_info *i = &out[(*n)++];
        *i = (qd_device_info){.kind = QD_BACKEND_CUDA, .device = d, .total_bytes = (uint64_t)p.totalGlobalMem};
        snprintf(i->name, sizeof i->name, "%.63s", p.name);
    }
#endif
    return QD_OK;
}
