/* SPDX-License-Identifier: MIT
 * backend-ops-util.c - the check counters and the random stream of test-backend-ops
 * (backend-ops-util.h). */
#include <math.h>
#include <stdlib.h>

#include "backend-ops-util.h"

int qd_test_failures, qd_test_checks;

static uint64_t rng_state;

void qd_test_seed(uint64_t seed) { rng_state = seed; }

double urand(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}
float nrand(void) { return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(2 * M_PI * urand())); }
float *rvec(size_t n, float s) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = s * nrand();
    return v;
}


float *spd_matrix(size_t n, double cond) {
    double *Q = malloc(n * n * sizeof *Q), *S = calloc(n * n, sizeof *S);
    float *A = malloc(n * n * sizeof *A);
    if (!Q || !S || !A) exit(1);
    for (size_t i = 0; i < n * n; i++) Q[i] = nrand();
    for (size_t c = 0; c < n; c++) { /* row c orthonormal to rows < c, twice for fp64 orthogonality */
        for (int pass = 0; pass < 2; pass++)
            for (size_t p = 0; p < c; p++) {
                double dot = 0;
                for (size_t k = 0; k < n; k++) dot += Q[c * n + k] * Q[p * n + k];
                for (size_t k = 0; k < n; k++) Q[c * n + k] -= dot * Q[p * n + k];
            }
        double nn = 0;
        for (size_t k = 0; k < n; k++) nn += Q[c * n + k] * Q[c * n + k];
        for (size_t k = 0; k < n; k++) Q[c * n + k] /= sqrt(nn);
    }
    for (size_t r = 0; r < n; r++) {
        double d = n > 1 ? pow(cond, -(double)r / (double)(n - 1)) : 1.0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j <= i; j++) S[i * n + j] += d * Q[r * n + i] * Q[r * n + j];
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j <= i; j++) A[i * n + j] = A[j * n + i] = (float)S[i * n + j];
    free(Q), free(S);
    return A;
}
