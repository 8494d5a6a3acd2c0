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

