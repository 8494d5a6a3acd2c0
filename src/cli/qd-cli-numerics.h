/* SPDX-License-Identifier: MIT
 * qd-cli-numerics.h - the --numerics flag shared by quantize, eval and quant-layer: it becomes an option
 * suffix on the backend name (kernels/registry: "cuda:0+exact"), so everything that already passes the
 * name down (mpi/quantize-run.c included) creates the backend in that mode. */
#ifndef QD_CLI_NUMERICS_H
#define QD_CLI_NUMERICS_H

#include <stddef.h>

#define QD_NUMERICS_HELP                                                                                           \
    "arithmetic: fast (default; each backend's own BLAS order) or exact (fixed-order fp64 sums, the same bits " \
    "on cpu and cuda, slower; docs/cuda.md)"

/* backend + "+exact" when numerics is "exact" (into buf), else backend itself */
const char *qd_cli_backend_name(const char *backend, const char *numerics, char *buf, size_t cap);

#endif
