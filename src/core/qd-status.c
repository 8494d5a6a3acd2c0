/* SPDX-License-Identifier: MIT */
#include "qd-status.h"

const char *qd_status_str(qd_status st) {
    switch (st) {
#define QD_STATUS_STR(name, val, str) \
    case QD_##name:                   \
        return str;
        QD_STATUS_MAP(QD_STATUS_STR)
#undef QD_STATUS_STR
    }
    return "unknown status";
}

const char *qd_status_name(qd_status st) {
    switch (st) {
#define QD_STATUS_NAME(name, val, str) \
    case QD_##name:                    \
        return #name;
        QD_STATUS_MAP(QD_STATUS_NAME)
#undef QD_STATUS_NAME
    }
    return "UNKNOWN";
}

int qd_status_exit_code(qd_status st) {
    if (st == QD_OK) return 0;
    if (st == QD_ERR_USAGE) return 2;
    return 1;
}
