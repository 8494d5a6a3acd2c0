/* SPDX-License-Identifier: MIT
 * qdist - entry point: dispatches to a subcommand and maps its status to the exit code. */
#include <stdio.h>
#include <string.h>

#include "qd-commands.h"
#include "qd-log.h"
#include "qd-param.h"

static const struct {
    const char *name;
    const char *summary;
    qd_status (*fn)(int, char **);
} commands[] = {
#define QD_CMD_ENTRY(name, summary) {#name, summary, qd_cmd_##name},
    QD_COMMANDS(QD_CMD_ENTRY)
#undef QD_CMD_ENTRY
};

/* command names are C identifiers: '_' in the table is '-' on the command line */
static int name_is(const char *arg, const char *name) {
    for (; *arg && *name; arg++, name++)
        if (*arg != (*name == '_' ? '-' : *name)) return 0;
    return *arg == *name;
}

static void usage(FILE *f) {
    fprintf(f, "usage: qdist <command> [options]\n       qdist --version\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char shown[32];
        snprintf(shown, sizeof shown, "%s", commands[i].name);
        for (char *p = shown; *p; p++) *p = *p == '_' ? '-' : *p;
        fprintf(f, "  %-12s %s\n", shown, commands[i].summary);
    }
    fprintf(f, "\n'qdist <command> --help' describes each command's options.\n");
}

int main(int argc, char **argv) {
    qd_rank_set(0, 1);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("qdist %s\n", QD_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (name_is(argv[1], commands[i].name)) {
            qd_status st = qd_params_check();
            return qd_status_exit_code(st == QD_OK ? commands[i].fn(argc - 2, argv + 2) : st);
        }
    qd_fail(QD_ERR_USAGE, "unknown command '%s'; expected one of: inspect, quantize, export, eval, tokenize, quant-layer", argv[1]);
    return 2;
}
