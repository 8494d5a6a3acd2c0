/* SPDX-License-Identifier: MIT
 * qd-clock.h - the monotonic clock every timing of the tool reads (phases, progress, reports). */
#ifndef QD_CLOCK_H
#define QD_CLOCK_H

/* seconds since an arbitrary fixed point (CLOCK_MONOTONIC): only differences mean anything */
double qd_clock_s(void);

#endif
