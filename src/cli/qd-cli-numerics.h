/* SPDX-License-Identifier: MIT
 * qd-cli-numerics.h - the --numerics flag shared by quantize, eval and quant-layer. Each command
 * parses --backend and --numerics together into one qd_backend_spec (kernels/registry, qd-backends.h)
 * and hands the struct down. */
#ifndef QD_CLI_NUMERICS_H
#define QD_CLI_NUMERICS_H

#define QD_NUMERICS_HELP                                                                                           \
    "arithmetic: fast (default; each backend's own BLAS order) or exact (fixed-order fp64 sums, the same bits " \
    "on cpu and cuda, slower; docs/cuda.md)"

#endif
