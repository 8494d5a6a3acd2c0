/* SPDX-License-Identifier: MIT
 * qd-param.h - every tunable qdist reads from the environment, declared in one table (NCCL's param.h
 * is the model). A new variable is one line in QD_PARAMS plus a row in docs/tunables.md; nothing
 * else calls getenv. Values are read when asked (no cache: no global mutable state), and each reader
 * validates its own value where it uses it, naming the variable in its error.
 */
#ifndef QD_PARAM_H
#define QD_PARAM_H

#include "qd-status.h"

/* X(ID, "ENV_NAME", "values", "what it does") */
#define QD_PARAMS(X)                                                                                             \
    X(THREADS, "QD_THREADS", "N > 0", "CPU backend: BLAS threads (default: the machine's CPU count, never the "  \
      "process's affinity, so every rank computes the same bits)")                                             \
    X(EXPORT_THREADS, "QD_EXPORT_THREADS", "N > 0", "export: packing threads (default min(CPUs, 8))")          \
    X(EXPORT_STREAM, "QD_EXPORT_STREAM", "0|1", "quantize: 0 exports from the staging after the run (default 1)") \
    X(GPUS_PER_NODE, "QD_GPUS_PER_NODE", "N > 0", "multi-rank runs: GPUs used per node (default: all it has)") \
    X(CUDA_MATH, "QD_CUDA_MATH", "fp32|tf32|bf16", "CUDA backend: GEMM math (default fp32)")                    \
    X(CUDA_ATTN, "QD_CUDA_ATTN", "fp32|auto", "CUDA backend: fp32 forces the fp32 attention under bf16 math")  \
    X(HESS_TILE, "QD_HESS_TILE", "N > 0", "CUDA backend: column strip of the tf32/bf16 Hessian's triangle "   \
      "(default 1024)")                                                                                          \
    X(MOE_HESS_MIB, "QD_MOE_HESS_MIB", "N > 0", "MoE GPTQ: MiB of expert Hessians held at once; experts are "   \
      "solved in batches that fit (default: the memory budget left beside the activations and working set; "    \
      "host backends 16 GiB)")                                                                                   \
    X(CHECK_INSTALL, "QD_CHECK_INSTALL", "set", "debug: check every installed dequantized weight on the host") \
    X(OP_PROFILE, "QD_OP_PROFILE", "set", "diagnostic: time every backend op (synchronizing around each) and "  \
      "print the times by op and by GEMM shape when the backend closes")                                        \
    X(AWQ_SMOOTH_ONLY, "QD_AWQ_SMOOTH_ONLY", "set", "tests: AWQ applies its scales and quantizes nothing")     \
    X(INJECT_FAIL, "QD_INJECT_FAIL", "rank:block", "tests: that rank fails before quantizing that block")      \
    X(INJECT_KILL, "QD_INJECT_KILL", "rank:block", "tests: that rank SIGKILLs itself after staging that block") \
    X(INJECT_KILL_EXPORT, "QD_INJECT_KILL_EXPORT", "set", "tests: rank 0 SIGKILLs itself after the last block, "  \
      "before the export commits")

typedef enum {
#define QD_PARAM_ENUM(id, env, values, doc) QD_PARAM_##id,
    QD_PARAMS(QD_PARAM_ENUM)
#undef QD_PARAM_ENUM
    QD_PARAM_N
} qd_param;

struct qd_param_def {
    const char *env, *values, *doc;
};
extern const struct qd_param_def qd_param_defs[QD_PARAM_N];

/* The variable's value as getenv gives it: NULL when unset (an empty value counts as set). */
const char *qd_param_str(qd_param p);

/* An "N > 0" variable: *out = 0 when unset or empty, else its value in 1..max; anything else (letters,
 * a sign, 0, over max) is refused (QD_ERR_USAGE) naming the variable and docs/tunables.md. */
qd_status qd_param_posint(qd_param p, int max, int *out);

/* Every set variable the commands read (QD_CUDA_MATH is for tests and benches) against its "values"
 * column ("N > 0", "a|b|c", "rank:block"; "set" takes anything), so that a garbage value is one clear
 * error before any work, not ignored (main calls it). */
qd_status qd_params_check(void);

#endif
