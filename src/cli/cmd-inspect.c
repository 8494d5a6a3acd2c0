/* SPDX-License-Identifier: MIT
 * qdist inspect - placeholder until its issue lands: refuses with a clear message. */
#include "qd-commands.h"
#include "qd-log.h"

qd_status qd_cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qd_fail(QD_ERR_UNSUPPORTED, "inspect: not implemented yet in this build");
}
