/* SPDX-License-Identifier: MIT
 * qd-clock.c - the monotonic clock (qd-clock.h). */
#include "qd-clock.h"

#include <time.h>

double qd_clock_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
