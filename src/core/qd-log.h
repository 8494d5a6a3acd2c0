/* SPDX-License-Identifier: MIT
 * qd-log.h - logging, error reporting and the rank context (the only global mutable state).
 *
 * qd_fail(status, fmt, ...) prints ONE line "qdist: error: <message>" (prefixed "[rank R] " when
 * more than one rank runs), remembers it for tests (qd_last_error, per thread) and returns status,
 * so origin sites write `return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': ...", path, name);`.
 * qd_warn / qd_info / qd_debug print at their level; --quiet silences info. Every message passes
 * through qd_esc (qd-esc.h) on its way out: a control byte from a name read from a file is printed
 * as \xHH, never raw.
 */
#ifndef QD_LOG_H
#define QD_LOG_H

#include <stdarg.h>
#include "qd-status.h"

typedef enum { QD_LOG_ERROR = 0, QD_LOG_WARN, QD_LOG_INFO, QD_LOG_DEBUG } qd_log_level;

/* The rank context: set once at start-up (1 rank unless MPI says otherwise). */
struct qd_rank_ctx {
    int rank;
    int nranks;
    qd_log_level level;
    int replica; /* this rank repeats work another rank also does and reports (data-parallel ranks > 0 of a
                  * stage): its warnings and info lines would be copies, so only errors print */
    int alike;   /* every rank reports the same errors (the command line's checks): only rank 0 prints them */
    char host[64];
};
extern struct qd_rank_ctx qd_rank;

void qd_rank_set(int rank, int nranks);
void qd_log_set_level(qd_log_level level);
void qd_log_set_replica(int replica);
void qd_log_set_alike(int alike);

#if defined(__GNUC__)
#define QD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QD_PRINTF(a, b)
#endif

qd_status qd_fail(qd_status st, const char *fmt, ...) QD_PRINTF(2, 3);
void qd_warn(const char *fmt, ...) QD_PRINTF(1, 2);
void qd_info(const char *fmt, ...) QD_PRINTF(1, 2);
void qd_debug(const char *fmt, ...) QD_PRINTF(1, 2);

/* The last message qd_fail produced on this thread ("" if none); qd_clear_error resets it. */
const char *qd_last_error(void);
void qd_clear_error(void);

#endif
