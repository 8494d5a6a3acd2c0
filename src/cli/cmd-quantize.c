/* SPDX-License-Identifier: MIT
 * qdist quantize - placeholder until its issue lands: refuses with a clear message. */
#include "qd-commands.h"
#include "qd-log.h"

qd_status qd_cmd_quantize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qd_fail(QD_ERR_UNSUPPORTED, "quantize: not implemented yet in this build");
}
