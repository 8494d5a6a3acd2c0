/* SPDX-License-Identifier: MIT
 * qd-backends.h - choosing a backend by name; the only code that knows every backend.
 *
 * name: "cpu", "cuda" (builds with QD_HAVE_CUDA; device 0, or "cuda:N"), or "auto" / "auto:N" (cuda
 * device N when built and it answers, else cpu; the CLI's default). An unknown or unavailable name fails with a message listing the
 * names this build offers. Options follow the name after '+': "+exact" creates the backend in exact
 * numerics (qd-backend.h, qd_numerics), "+fast" in the default mode; e.g. "cuda:1+exact".
 */
#ifndef QD_BACKENDS_H
#define QD_BACKENDS_H

#include "qd-backend.h"

qd_status qd_backend_create(const char *name, qd_backend_t *out);
const char *qd_backend_names(void); /* "cpu" or "cpu, cuda" */
int qd_backend_gpu_count(void);     /* CUDA devices this process sees (0 without CUDA or a driver) */

#endif
