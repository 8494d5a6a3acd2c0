/* SPDX-License-Identifier: MIT
 * phase.c - the per-process phase accumulator (qd-phase.h). */
#include "qd-phase.h"

#include "qd-clock.h"

static struct {
    double t[QD_PH_N];
    double since; /* when the current phase began */
    qd_phase cur;
} ph;

static void charge(qd_backend_t be) {
    /* a failed sync is reported by the next op that touches the device; timing must not fail */
    if (be) (void)qd_be_synchronize(be);
    double t = qd_clock_s();
    if (ph.since > 0) ph.t[ph.cur] += t - ph.since;
    ph.since = t;
}

qd_phase qd_phase_set(qd_backend_t be, qd_phase p) {
    qd_phase prev = ph.cur;
    if (p == prev && ph.since > 0) return prev;
    charge(be);
    ph.cur = p;
    return prev;
}

void qd_phase_totals(qd_backend_t be, double out[QD_PH_N]) {
    charge(be);
    for (int i = 0; i < QD_PH_N; i++) out[i] = ph.t[i];
}

void qd_phase_reset(void) {
    for (int i = 0; i < QD_PH_N; i++) ph.t[i] = 0;
    ph.cur = QD_PH_OTHER;
    ph.since = qd_clock_s();
}

const char *qd_phase_name(qd_phase p) {
    static const char *const names[QD_PH_N] = {"other",   "read",    "forward", "hessian", "cholesky", "sweep",
                                               "install", "awq",     "staging", "transfer", "wait",   "write",
                                               "reduce"};
    return p < QD_PH_N ? names[p] : "?";
}
