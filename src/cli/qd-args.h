/* SPDX-License-Identifier: MIT
 * qd-args.h - the small option parser every qdist subcommand uses.
 *
 * A command declares a table of qd_opt {long name, kind, target, help, allowed}. qd_args_parse
 * accepts --name VALUE, --name=VALUE, --flag, --no-flag (for QD_OPT_FLAG), positionals in order, and
 * --help. Unknown options, missing values, and values outside `allowed` (a "|"-separated list for
 * QD_OPT_CHOICE, "MIN..MAX" for numbers) fail with one line naming the option and what is allowed,
 * returning QD_ERR_USAGE. Every INT, DOUBLE and SIZE option must state its range (inclusive; SIZE
 * bounds may carry units, "1KB..1PB"); --help shows it, and a table entry without one fails every
 * parse (QD_ERR_INTERNAL). Non-finite numbers are refused. After printing --help it returns QD_OK
 * with *help_shown = 1.
 */
#ifndef QD_ARGS_H
#define QD_ARGS_H

#include <stdint.h>
#include "qd-status.h"

typedef enum { QD_OPT_FLAG, QD_OPT_STR, QD_OPT_INT, QD_OPT_DOUBLE, QD_OPT_CHOICE, QD_OPT_SIZE } qd_opt_kind;

typedef struct qd_opt {
    const char *name;    /* without the leading "--" */
    qd_opt_kind kind;
    void *target;        /* int* (FLAG, INT), const char** (STR, CHOICE), double*, uint64_t* (SIZE) */
    const char *metavar; /* shown in help, e.g. "DIR" */
    const char *help;
    const char *allowed; /* CHOICE: "a|b|c"; INT/DOUBLE/SIZE: "min..max" (required); STR: NULL */
    int *seen;           /* optional: set to 1 when given on the command line */
} qd_opt;

typedef struct qd_cmd_spec {
    const char *name;      /* "inspect" */
    const char *usage;     /* "MODEL_DIR [--json]" */
    const char *summary;   /* one line */
    const qd_opt *opts;
    int nopts;
    const char **positional_names; /* NULL-terminated, e.g. {"MODEL_DIR", NULL} */
    const char **positionals;      /* out: array of the same length */
    int min_positionals;
} qd_cmd_spec;

/* Returns QD_OK with *help_shown = 1 when --help was printed (the command should exit 0). */
qd_status qd_args_parse(const qd_cmd_spec *spec, int argc, char **argv, int *help_shown);
void qd_args_print_help(const qd_cmd_spec *spec);
/* "5GB", "500MB", "1024" -> bytes (decimal units, also KiB/MiB/GiB). Returns 0, -1 when s is not a
 * size, -2 when it is one that no uint64 holds (negative, infinite, 2^64 bytes or more). */
int qd_parse_size(const char *s, uint64_t *out);

#endif
