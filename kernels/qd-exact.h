/* SPDX-License-Identifier: MIT
 * qd-exact.h - the arithmetic of the "exact" numerics mode (qd-backend.h, QD_NUMERICS_EXACT), written
 * once for the CPU backend (C17) and the CUDA backend (device code), so that both compute the same
 * bits. Internal to kernels/.
 *
 * Why: GPTQ's error feedback is chaotic. A 1e-7 relative difference in the Hessian (cuBLAS and
 * OpenBLAS sum in different orders) flips a code at a rounding boundary, and the flip's error then
 * travels along the row; block by block the two backends drift apart (91% equal codes on the
 * fixture). A tolerance cannot fix that; identical arithmetic can. The rules of exact mode:
 *  - Every dot product / GEMM / SYRK element is acc = 0.0; acc += (double)a_k * (double)b_k for k
 *    ascending. The product of two floats is exact in double, so acc + a*b and fma(a, b, acc) round
 *    the same way: the order is the only thing to fix, and both backends use this one.
 *  - The result is rounded to float once, after the fp64 epilogue alpha * acc + beta * c.
 *  - exp is qd_exact_exp below (plain +, *, rint and a power of two), not libm's or CUDA's exp, whose
 *    last bits differ. Each op is one IEEE round-to-nearest operation: device code spells them as
 *    __dmul_rn/__dadd_rn (nvcc would otherwise contract a*b+c into an FMA); C is compiled with
 *    -ffp-contract=off (CMakeLists.txt, qd_kernels; also the ISO C default of gcc).
 */
#ifndef QD_EXACT_H
#define QD_EXACT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define QD_EX_FN __host__ __device__ static inline
#else
#define QD_EX_FN static inline
#endif

#if defined(__CUDA_ARCH__)
#define QD_DMUL(a, b) __dmul_rn((a), (b))
#define QD_DADD(a, b) __dadd_rn((a), (b))
#define QD_DSUB(a, b) __dsub_rn((a), (b))
#define QD_DDIV(a, b) __ddiv_rn((a), (b))
#else
#define QD_DMUL(a, b) ((a) * (b))
#define QD_DADD(a, b) ((a) + (b))
#define QD_DSUB(a, b) ((a) - (b))
#define QD_DDIV(a, b) ((a) / (b))
#endif

/* Reductions (qd_be_reduce) sum QD_EXACT_CHUNK consecutive elements in order, then the partial sums
 * in order: one order both backends can run (the GPU one thread per chunk). */
#define QD_EXACT_CHUNK 4096

/* e^x to about 1 ulp in double, with the same operations on every backend: x = k ln2 + r
 * (Cody-Waite, LN2_HI has 21 trailing zero bits so k * LN2_HI is exact), e^r by its Taylor series to
 * r^13 (|r| <= 0.347: truncation error < 1e-17 relative), times 2^k built from the exponent bits.
 * Outside [-708, 709] the result is 0 or inf (as fp32 both ends are 0 and inf anyway). */
QD_EX_FN double qd_exact_exp(double x) {
    if (x != x) return x;
    if (x > 709.0) return INFINITY;
    if (x < -708.0) return 0.0;
    const double LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
    double k = rint(QD_DMUL(x, 1.44269504088896338700e+00));
    double r = QD_DSUB(QD_DSUB(x, QD_DMUL(k, LN2_HI)), QD_DMUL(k, LN2_LO));
    double p = 1.6059043836821614599e-10; /* 1/13! */
    p = QD_DADD(QD_DMUL(p, r), 2.0876756987868098979e-09); /* 1/12! */
    p = QD_DADD(QD_DMUL(p, r), 2.5052108385441718775e-08); /* 1/11! */
    p = QD_DADD(QD_DMUL(p, r), 2.7557319223985890653e-07); /* 1/10! */
    p = QD_DADD(QD_DMUL(p, r), 2.7557319223985890653e-06); /* 1/9! */
    p = QD_DADD(QD_DMUL(p, r), 2.4801587301587301566e-05); /* 1/8! */
    p = QD_DADD(QD_DMUL(p, r), 1.9841269841269841253e-04); /* 1/7! */
    p = QD_DADD(QD_DMUL(p, r), 1.3888888888888888889e-03); /* 1/6! */
    p = QD_DADD(QD_DMUL(p, r), 8.3333333333333333333e-03); /* 1/5! */
    p = QD_DADD(QD_DMUL(p, r), 4.1666666666666666667e-02); /* 1/4! */
    p = QD_DADD(QD_DMUL(p, r), 1.6666666666666666667e-01); /* 1/3! */
    p = QD_DADD(QD_DMUL(p, r), 0.5);
    p = QD_DADD(QD_DMUL(p, r), 1.0);
    p = QD_DADD(QD_DMUL(p, r), 1.0);
    int64_t bits = ((int64_t)k + 1023) << 52; /* k in [-1022, 1023]: a normal power of two */
    double s;
#if defined(__CUDA_ARCH__)
    s = __longlong_as_double((long long)bits);
#else
    memcpy(&s, &bits, sizeof s);
#endif
    return QD_DMUL(p, s);
}

/* GEMM epilogue: (float)(alpha * acc + beta * c); beta == 0 ignores c (which may be garbage). */
QD_EX_FN float qd_exact_out(double acc, double alpha, double beta, float c) {
    double v = QD_DMUL(alpha, acc);
    if (beta != 0.0) v = QD_DADD(v, QD_DMUL(beta, (double)c));
    return (float)v;
}

/* SwiGLU: (float)(x / (1 + e^-x) * y) in double. */
QD_EX_FN float qd_exact_swiglu(float x, float y) {
    double xd = (double)x;
    return (float)QD_DMUL(QD_DDIV(xd, QD_DADD(1.0, qd_exact_exp(-xd))), (double)y);
}

/* Attention: a query-key score (float)(scale * sum_d q_d k_d) with the dot product in order, and a
 * softmax numerator (float)exp(score - max) (the subtraction in fp32, as the fast path). */
QD_EX_FN float qd_exact_score(const float *q, const float *k, size_t D, float scale) {
    double dot = 0.0;
    for (size_t d = 0; d < D; d++) dot = QD_DADD(dot, (double)q[d] * (double)k[d]); /* exact product */
    return (float)QD_DMUL((double)scale, dot);
}
QD_EX_FN float qd_exact_softmax_num(float score, float mx) { return (float)qd_exact_exp((double)(score - mx)); }

#endif
