/* SPDX-License-Identifier: MIT
 * backend-compare-util.h - the cross-backend half of tests/kernels/test-backend-ops
 * (backend-compare*.c; the overview is in backend-compare.c): the pair of backends under comparison,
 * buffers held on both, the comparisons that print and count a check, the quantizer settings every
 * quantization case loops over, and the entries of the files the driver calls. */
#ifndef QD_TEST_BACKEND_COMPARE_UTIL_H
#define QD_TEST_BACKEND_COMPARE_UTIL_H

#include <stddef.h>

#include "backend-ops-util.h"
#include "qd-backend.h"
#include "qd-backends.h"

extern qd_backend_t BE[2];       /* 0 = the reference (cpu, fast), 1 = the backend under test */
extern qd_numerics BE1_NUMERICS; /* BE[1]'s own numerics, restored after the exact section */
extern qd_device_info DEV;       /* the device under test */

/* one buffer of n floats on each backend */
typedef struct { qd_buf_t b[2]; size_t n; } pbuf;
#define R(p, i) QD_REF((p).b[i], 0)

pbuf P(const void *host, size_t n); /* filled from host (f32) on both, or left as allocated */
void pfree(pbuf p);
void *dl(pbuf p, int i);            /* side i's n 4-byte elements on the host (malloc'd) */
double cmpf(const char *what, pbuf p, double tol);      /* max |test - cpu| / max |cpu| <= tol */
double cmp_rms(const char *what, pbuf p, double tol);   /* ||test - cpu|| / ||cpu|| <= tol */
double cmpi(const char *what, pbuf p, double min_frac); /* share of equal 4-byte elements >= min_frac */
/* the call once per backend, with be = BE[i] and i in scope; each is a check that it returned QD_OK */
#define BOTH(call)                                  \
    for (int i = 0; i < 2; i++) {                   \
        qd_backend_t be = BE[i];                    \
        QD_EXPECT_EQ_INT((call), QD_OK);            \
    }

#define QD_TEST_NCFGS 13
extern const qd_qcfg CFGS[QD_TEST_NCFGS];
extern const char *const CFGN[QD_TEST_NCFGS];
float *make_U(size_t K); /* a damped random Hessian's U (upper Cholesky factor of H^-1), made on BE[0] */

void qd_test_compare_exact(void); /* backend-compare-exact.c: both sides in exact numerics */
void qd_test_compare_cuda(void);  /* backend-compare-cuda.c: the ops only the CUDA backend has */
void qd_test_compare_fp8(void);   /* backend-compare-fp8.c: fp8_dequant */

#endif
