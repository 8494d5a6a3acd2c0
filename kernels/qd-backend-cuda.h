/* SPDX-License-Identifier: MIT
 * qd-backend-cuda.h - creation of the CUDA backend (kernels/cuda/, built only with QD_HAVE_CUDA).
 *
 * device: CUDA device ordinal. The backend implements every entry of qd-backend-impl.h and must
 * reproduce the CPU backend (the reference) within the per-op tolerances of tests/kernels.
 */
#ifndef QD_BACKEND_CUDA_H
#define QD_BACKEND_CUDA_H

#include "qd-backend.h"

/* math: the GEMM math (qd-backend.h; AUTO = FP32). */
qd_status qd_backend_cuda_create_math(int device, qd_math math, qd_backend_t *out);
/* The same with the math of QD_CUDA_MATH (tests and benches that compare modes; qdist uses --math). */
qd_status qd_backend_cuda_create(int device, qd_backend_t *out);

#endif
