/* SPDX-License-Identifier: MIT
 * qdist eval - placeholder until its issue lands: refuses with a clear message. */
#include "qd-commands.h"
#include "qd-log.h"

qd_status qd_cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qd_fail(QD_ERR_UNSUPPORTED, "eval: not implemented yet in this build");
}
