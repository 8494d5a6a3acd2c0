/* SPDX-License-Identifier: MIT
 * qdist tokenize - placeholder until its issue lands: refuses with a clear message. */
#include "qd-commands.h"
#include "qd-log.h"

qd_status qd_cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return qd_fail(QD_ERR_UNSUPPORTED, "tokenize: not implemented yet in this build");
}
