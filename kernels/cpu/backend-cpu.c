/* SPDX-License-Identifier: MIT
 * backend-cpu.c - the CPU backend's table and buffers (plain host memory). */
#include <cblas.h>
#include <stdlib.h>
#include <unistd.h>

#include "cpu-ops.h"
#include "qd-backend-cpu.h"
#include "qd-check.h"
#include "qd-hugemem.h"
#include "qd-log.h"
#include "qd-param.h"

/* Buffers from this size up are put on transparent huge pages where the kernel offers them (a block's
 * weights are allocated and freed per block: with 4 KB pages their first touch was a fifth of a CPU
 * fp8-dynamic run of Llama-3-8B shapes, in page faults) */
#define QD_CPU_HUGE_BYTES ((size_t)32 << 20)

static qd_status cpu_buf_alloc(qd_backend_t be, size_t n, void **ptr) {
    (void)be;
    /* 64-byte alignment keeps BLAS on its fast paths; zeroed as the interface promises */
    size_t bytes = (n * 4 + 63) / 64 * 64;
    void *p = qd_hugemem_alloc(bytes, QD_CPU_HUGE_BYTES);
    if (!p) return qd_fail(QD_ERR_NOMEM, "cpu backend: out of memory allocating %zu bytes", bytes);
    __builtin_memset(p, 0, bytes);
    *ptr = p;
    return QD_OK;
}

static void cpu_buf_free(qd_backend_t be, void *ptr) {
    (void)be;
    free(ptr);
}

static void cpu_free(qd_backend_t be) { free(be->ctx); }

static const struct qd_backend_i cpu_iface = {
    .name = "cpu",
    .free = cpu_free,
    .synchronize = NULL,
    .buf_alloc = cpu_buf_alloc,
    .buf_free = cpu_buf_free,
    .upload = qd_cpu_upload,
    .download = qd_cpu_download,
    .copy = qd_cpu_copy,
    .fill = qd_cpu_fill,
    .gemm = qd_cpu_gemm,
    .hessian = qd_cpu_hessian,
    .symmetrize = qd_cpu_symmetrize,
    .diag_add = qd_cpu_diag_add,
    .acc64 = qd_cpu_acc64,
    .chol_inv = qd_cpu_chol_inv,
    .permute = qd_cpu_permute,
    .ewise = qd_cpu_ewise,
    .rows = qd_cpu_rows,
    .rmsnorm = qd_cpu_rmsnorm,
    .rope = qd_cpu_rope,
    .attention = qd_cpu_attention,
    .cross_entropy = qd_cpu_cross_entropy,
    .reduce = qd_cpu_reduce,
    .colstat = qd_cpu_colstat,
    .quantize = qd_cpu_quantize,
    .gptq_sweep = qd_cpu_gptq_sweep,
    .awq_clip = qd_cpu_awq_clip,
    .fp8_dequant = qd_cpu_fp8_dequant,
};

qd_status qd_backend_cpu_create(int nthreads, qd_backend_t *out) {
    qd_cpu_ctx *ctx = malloc(sizeof *ctx);
    if (!ctx) return qd_fail(QD_ERR_NOMEM, "cpu backend: out of memory");
    /* The thread count changes some BLAS summation orders, so it is fixed from the machine (or
     * QD_THREADS), never from the process's CPU affinity: a rank that mpirun binds to one core then
     * computes the same bits as a lone process (docs/architecture.md, byte-identical schedules). */
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int env = 0;
    qd_status pst = qd_param_posint(QD_PARAM_THREADS, 4096, &env);
    if (pst != QD_OK) {
        free(ctx);
        return pst;
    }
    if (nthreads <= 0 && env > 0) nthreads = env;
    ctx->nthreads = nthreads > 0 ? nthreads : (online > 0 ? (int)online : 1);
    openblas_set_num_threads(ctx->nthreads);
    qd_status st = qd_backend_new(&cpu_iface, ctx, out);
    if (st != QD_OK) free(ctx);
    return st;
}
