/* SPDX-License-Identifier: MIT
 * qd-phase.h - where a rank's time goes: wall-clock seconds per phase of the block loop (read,
 * forward, Hessian, Cholesky, sweep, install, ...), for the run report.
 *
 * One accumulator per process (a rank computes on one thread, and the GPTQ layer code has no context
 * to carry it). qd_phase_set switches the current phase: the time since the last switch is charged to
 * the phase that was current. The backend's ops are asynchronous on a GPU, so a switch synchronizes
 * the backend first: GPU work is then charged to the phase that issued it, not to whichever phase
 * happens to wait for it. That costs one idle-queue sync per switch (a few hundred per block), which is
 * negligible next to the ops. Threads other than the compute thread must not call it.
 */
#ifndef QD_PHASE_H
#define QD_PHASE_H

#include "qd-backend.h"

typedef enum {
    QD_PH_OTHER,    /* anything not below (plan, set-up, small host work) */
    QD_PH_READ,     /* block weights: checkpoint read + upload (and dtype conversion) */
    QD_PH_FORWARD,  /* block forwards: calibration passes, the output of the quantized block, replay */
    QD_PH_HESSIAN,  /* accumulating X^T X (and the finiteness checks of X) */
    QD_PH_CHOLESKY, /* damping + chol_inv (with retries) */
    QD_PH_SWEEP,    /* the GPTQ column sweep, act-order permutes, RTN's quantize */
    QD_PH_INSTALL,  /* codes/scales to the host, dequantized weights back into the block */
    QD_PH_AWQ,      /* AWQ scale search, scaling and clip search */
    QD_PH_STAGING,  /* writing the staged block (HDF5, fsync) or waiting for its writer */
    QD_PH_TRANSFER, /* activations between host and device, embedding */
    QD_PH_WAIT,     /* blocked on a neighbour rank */
    QD_PH_WRITE,    /* rank 0: report and export of the checkpoint */
    QD_PH_REDUCE,   /* data-parallel ranks: Hessian and statistic sums, result gathers (with their waits) */
    QD_PH_N
} qd_phase;

/* Switches to phase p (be may be NULL: no synchronize) and returns the previous phase. */
qd_phase qd_phase_set(qd_backend_t be, qd_phase p);
/* Charges the time so far to the current phase and copies the totals (seconds) into out. */
void qd_phase_totals(qd_backend_t be, double out[QD_PH_N]);
void qd_phase_reset(void);
const char *qd_phase_name(qd_phase p); /* "read", "forward", ... (report keys) */

#endif
