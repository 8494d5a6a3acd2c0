/* SPDX-License-Identifier: MIT
 * qd-cli-numerics.h - the --numerics and --math flags shared by quantize, eval and quant-layer. Each
 * command parses --backend, --numerics and --math together into one qd_backend_spec (kernels/registry, qd-backends.h)
 * and hands the struct down. */
#ifndef QD_CLI_NUMERICS_H
#define QD_CLI_NUMERICS_H

#define QD_NUMERICS_HELP                                                                                           \
    "arithmetic: fast (default; each backend's own BLAS order) or exact (fixed-order fp64 sums, the same bits " \
    "on cpu and cuda, slower; docs/cuda.md)"

#define QD_MATH_HELP                                                                                               \
    "GPU math in fast numerics: auto (default: bf16 tensor cores with fp32 accumulation for bf16/fp16 weights, " \
    "fp32 otherwise), fp32, tf32 or bf16 (docs/cuda.md; the cpu backend is always fp32)"

#endif
