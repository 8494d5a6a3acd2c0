/* SPDX-License-Identifier: MIT
 * qd-backend-impl.h - what a backend implements: the table of qd-backend.h's ops. Only backends
 * (kernels/cpu, kernels/cuda) and the wrappers (kernels/backend.c) include it.
 *
 * A backend fills a static const struct qd_backend_i (C17 designated initializers) and creates its
 * handle with qd_backend_new. The wrappers have already checked the handle, that every qd_ref lies
 * inside its buffer and that the buffer belongs to this backend, and that sizes are consistent, so an
 * entry only reports failures of its own (allocation, foreign library calls) once, with qd_fail -
 * except chol_inv, whose non-PD result is QD_ERR_NUMERIC without a message.
 */
#ifndef QD_BACKEND_IMPL_H
#define QD_BACKEND_IMPL_H

#include "qd-backend.h"

struct qd_backend_i {
    const char *name;                                                          /* "cpu", "cuda" */
    void (*free)(qd_backend_t be);                                             /* frees ctx (optional) */
    qd_status (*synchronize)(qd_backend_t be);                                 /* (optional) synchronous backend */
    qd_status (*buf_alloc)(qd_backend_t be, size_t n, void **ptr);             /* n zeroed 4-byte elements */
    void (*buf_free)(qd_backend_t be, void *ptr);                              /* releases a buf_alloc result */
    qd_status (*upload)(qd_backend_t be, const struct qd_upload_args *a);      /* host -> device, converting */
    qd_status (*download)(qd_backend_t be, const struct qd_download_args *a);  /* device -> host, complete on return */
    qd_status (*copy)(qd_backend_t be, const struct qd_copy_args *a);          /* device 2-D block copy */
    qd_status (*fill)(qd_backend_t be, const struct qd_fill_args *a);          /* set to a value */
    qd_status (*gemm)(qd_backend_t be, const struct qd_gemm_args *a);          /* fp32 GEMM */
    qd_status (*hessian)(qd_backend_t be, const struct qd_hessian_args *a);    /* H = beta H + alpha X^T X */
    qd_status (*symmetrize)(qd_backend_t be, const struct qd_symmetrize_args *a); /* lower <- upper */
    qd_status (*diag_add)(qd_backend_t be, const struct qd_diag_add_args *a);  /* damping, dead columns */
    qd_status (*acc64)(qd_backend_t be, const struct qd_acc64_args *a);        /* fp64 sums of fp32 terms */
    qd_status (*chol_inv)(qd_backend_t be, const struct qd_chol_inv_args *a);  /* A <- chol(A^-1) upper */
    qd_status (*permute)(qd_backend_t be, const struct qd_permute_args *a);    /* act-order gathers */
    qd_status (*ewise)(qd_backend_t be, const struct qd_ewise_args *a);        /* elementwise family */
    qd_status (*rows)(qd_backend_t be, const struct qd_rows_args *a);          /* gather / scatter-add rows */
    qd_status (*rmsnorm)(qd_backend_t be, const struct qd_rmsnorm_args *a);    /* HF RMSNorm per row */
    qd_status (*rope)(qd_backend_t be, const struct qd_rope_args *a);          /* half-split RoPE */
    qd_status (*attention)(qd_backend_t be, const struct qd_attention_args *a);/* causal GQA */
    qd_status (*cross_entropy)(qd_backend_t be, const struct qd_xent_args *a); /* sum of token nll */
    qd_status (*reduce)(qd_backend_t be, const struct qd_reduce_args *a);      /* scalar reductions */
    qd_status (*colstat)(qd_backend_t be, const struct qd_colstat_args *a);    /* AWQ statistics */
    qd_status (*quantize)(qd_backend_t be, const struct qd_quantize_args *a);  /* group params + fake quant */
    qd_status (*gptq_sweep)(qd_backend_t be, const struct qd_gptq_sweep_args *a); /* GPTQ column sweep */
    qd_status (*awq_clip)(qd_backend_t be, const struct qd_awq_clip_args *a);  /* AWQ clip search */
    qd_status (*fp8_dequant)(qd_backend_t be, const struct qd_fp8_dequant_args *a); /* e4m3 x scale */
    /* optional (NULL when absent) */
    qd_status (*u8_codes)(qd_backend_t be, const struct qd_u8_codes_args *a);  /* codes as bytes */
    qd_status (*mem_info)(qd_backend_t be, struct qd_mem_info *out);           /* device memory */
    qd_status (*stream)(qd_backend_t be, void **stream);                      /* compute stream (GPU) */
};

struct qd_backend {
    const struct qd_backend_i *iface;
    void *ctx; /* the backend's own state */
    qd_numerics numerics; /* QD_NUMERICS_FAST unless set at creation (qd_be_set_numerics) */
    struct qd_op_prof *prof; /* QD_OP_PROFILE's timings (backend-prof.c), NULL when off */
};

/* QD_OP_PROFILE (backend-prof.c): attach puts a timing table in front of be's (when the variable is
 * set), report prints what it timed, detach gives the backend its own table back. */
void qd__backend_prof_attach(qd_backend_t be);
void qd__backend_prof_report(qd_backend_t be);
void qd__backend_prof_detach(qd_backend_t be);

struct qd_buf {
    qd_backend_t owner;
    size_t n;  /* 4-byte elements */
    void *ptr; /* host pointer (cpu) or device pointer (cuda) */
};

/* The backend's view of a ref: element pointer (4-byte units) into the buffer. */
static inline float *qd_ref_f32(qd_ref r) { return (float *)r.buf->ptr + r.off; }
static inline int32_t *qd_ref_i32(qd_ref r) { return (int32_t *)r.buf->ptr + r.off; }

/* Allocates the handle {iface, ctx}; iface must have every non-optional entry. */
qd_status qd_backend_new(const struct qd_backend_i *iface, void *ctx, qd_backend_t *out);

#endif
