/* SPDX-License-Identifier: MIT */
#include "qd-log.h"
#include "qd-esc.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct qd_rank_ctx qd_rank = {.rank = 0, .nranks = 1, .level = QD_LOG_INFO, .host = ""};

/* Per-thread copy of the last error so tests can assert on the message; not shared state. */
static _Thread_local char last_error[1024];

void qd_rank_set(int rank, int nranks) {
    qd_rank.rank = rank;
    qd_rank.nranks = nranks;
    if (gethostname(qd_rank.host, sizeof qd_rank.host) != 0) snprintf(qd_rank.host, sizeof qd_rank.host, "?");
    qd_rank.host[sizeof qd_rank.host - 1] = '\0';
}

void qd_log_set_level(qd_log_level level) { qd_rank.level = level; }
void qd_log_set_replica(int replica) { qd_rank.replica = replica; }
void qd_log_set_alike(int alike) { qd_rank.alike = alike; }

static void emit(const char *tag, const char *fmt, va_list ap, char *keep, size_t keep_len) {
    char raw[1024], msg[1024];
    vsnprintf(raw, sizeof raw, fmt, ap);
    /* one line: newlines inside a message would break the one-line contract */
    for (char *p = raw; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    /* names from files (tensor names, JSON keys, file names) may hold escape sequences: never raw */
    qd_esc(raw, msg, sizeof msg);
    if (keep) snprintf(keep, keep_len, "%s", msg);
    if (qd_rank.nranks > 1)
        fprintf(stderr, "qdist: [rank %d] %s%s\n", qd_rank.rank, tag, msg);
    else
        fprintf(stderr, "qdist: %s%s\n", tag, msg);
    fflush(stderr);
}

qd_status qd_fail(qd_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (qd_rank.alike && qd_rank.rank != 0) vsnprintf(last_error, sizeof last_error, fmt, ap);
    else emit("error: ", fmt, ap, last_error, sizeof last_error);
    va_end(ap);
    return st;
}

void qd_warn(const char *fmt, ...) {
    if (qd_rank.level < QD_LOG_WARN || qd_rank.replica) return;
    va_list ap;
    va_start(ap, fmt);
    emit("warning: ", fmt, ap, NULL, 0);
    va_end(ap);
}

void qd_info(const char *fmt, ...) {
    if (qd_rank.level < QD_LOG_INFO || qd_rank.replica) return;
    va_list ap;
    va_start(ap, fmt);
    emit("", fmt, ap, NULL, 0);
    va_end(ap);
}

void qd_debug(const char *fmt, ...) {
    if (qd_rank.level < QD_LOG_DEBUG || qd_rank.replica) return;
    va_list ap;
    va_start(ap, fmt);
    emit("debug: ", fmt, ap, NULL, 0);
    va_end(ap);
}

const char *qd_last_error(void) { return last_error; }
void qd_clear_error(void) { last_error[0] = '\0'; }
