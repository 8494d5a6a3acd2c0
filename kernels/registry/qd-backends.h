/* SPDX-License-Identifier: MIT
 * qd-backends.h - choosing a backend: the only code that knows every backend.
 *
 * A choice is a qd_backend_spec {kind, device, numerics}, parsed once from the command line
 * (qd_backend_spec_parse) and handed down as the struct; qd_backend_open creates the backend it names.
 * Names: "cpu", "cuda" (builds with QD_HAVE_CUDA; "cuda:N" picks device N), "auto" / "auto:N" (the
 * CUDA device when this build has CUDA and a device answers, else the CPU; the CLI's default). An
 * option may follow after '+': "+exact" / "+fast" set the numerics (qd-backend.h, qd_numerics), so
 * "cuda:1+exact" is still accepted; --numerics sets the same field; "+fp32" / "+tf32" / "+bf16" set the
 * GPU math (qd_math), as --math does. An unknown or unavailable name
 * fails (QD_ERR_USAGE) with a message listing the names this build offers.
 *
 * qd_backend_devices lists what this process can run on, with each device's memory; tests loop over
 * it (tests/kernels/test-backend-ops.c), the run maps ranks onto it.
 */
#ifndef QD_BACKENDS_H
#define QD_BACKENDS_H

#include <stddef.h>
#include <stdint.h>

#include "qd-backend.h"
#include "qd-dtype.h"

typedef enum { QD_BACKEND_CPU, QD_BACKEND_CUDA, QD_BACKEND_AUTO } qd_backend_kind;

#define QD_DEVICE_ANY (-1) /* no device named: device 0, or one per rank in a multi-rank run */

typedef struct qd_backend_spec {
    qd_backend_kind kind;
    int device; /* CUDA ordinal, or QD_DEVICE_ANY; the CPU has none */
    qd_numerics numerics;
    qd_math math; /* AUTO until qd_backend_spec_set_math resolves it; opened unresolved it is FP32 */
} qd_backend_spec;

/* name ("cpu", "cuda:1", "auto+exact", NULL = "cpu") and numerics ("fast" | "exact" | NULL: the name's
 * option, else fast) into *out. Usage errors name the flag's value. */
qd_status qd_backend_spec_parse(const char *name, const char *numerics, qd_backend_spec *out);
/* --math ("auto" | "fp32" | "tf32" | "bf16", NULL = auto) resolved against the dtype of the
 * model's weights: auto is BF16 for BF16/F16 weights, else FP32. Usage errors name the flag. */
qd_status qd_backend_spec_set_math(qd_backend_spec *s, const char *math, qd_dtype weights);
const char *qd_math_name(qd_math m); /* "auto", "fp32", "tf32", "bf16" */

/* The spec as a name that qd_backend_spec_parse reads back ("cuda:1+exact"); for logs. */
const char *qd_backend_spec_name(const qd_backend_spec *s, char *buf, size_t cap);
/* 1 when the spec runs on a GPU in this process (auto resolved: a CUDA build with a device). */
int qd_backend_spec_is_gpu(const qd_backend_spec *s);
qd_status qd_backend_open(const qd_backend_spec *s, qd_backend_t *out);

/* parse + open, for callers that hold a name (tests, benches) */
qd_status qd_backend_create(const char *name, qd_backend_t *out);
const char *qd_backend_names(void); /* "cpu, auto" or "cpu, cuda, auto" */
int qd_backend_gpu_count(void);     /* CUDA devices this process sees (0 without CUDA or a driver) */

typedef struct qd_device_info {
    qd_backend_kind kind; /* QD_BACKEND_CPU or QD_BACKEND_CUDA */
    int device;           /* CUDA ordinal; 0 for the CPU */
    char name[64];
    uint64_t total_bytes; /* host RAM, or the GPU's global memory */
    uint64_t free_bytes;  /* host: available now; GPU: 0 (reading it would create a context on every device) */
} qd_device_info;

/* Every device this process can run on, the CPU first; *n of at most cap entries are filled. */
qd_status qd_backend_devices(qd_device_info *out, int cap, int *n);

#endif
