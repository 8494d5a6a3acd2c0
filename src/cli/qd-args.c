/* SPDX-License-Identifier: MIT */
#include "qd-args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qd-check.h"
#include "qd-log.h"
#include "qd-range.h"

static int is_numeric(qd_opt_kind k) { return k == QD_OPT_INT || k == QD_OPT_DOUBLE || k == QD_OPT_SIZE; }

void qd_args_print_help(const qd_cmd_spec *spec) {
    printf("usage: qdist %s %s\n\n%s\n", spec->name, spec->usage, spec->summary);
    if (spec->nopts) printf("\noptions:\n");
    for (int i = 0; i < spec->nopts; i++) {
        const qd_opt *o = &spec->opts[i];
        char left[96];
        if (o->kind == QD_OPT_FLAG)
            snprintf(left, sizeof left, "--%s", o->name);
        else
            snprintf(left, sizeof left, "--%s %s", o->name, o->metavar ? o->metavar : "VALUE");
        printf("  %-30s %s", left, o->help);
        if (o->allowed && (o->kind == QD_OPT_CHOICE || is_numeric(o->kind))) printf(" (%s)", o->allowed);
        printf("\n");
    }
    printf("  %-30s %s\n", "--help", "show this help");
}

int qd_parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno == EINVAL || end == s || isnan(v)) return -1;
    /* 2^64 and above cannot be held: refused rather than wrapped */
    const double limit = 18446744073709551616.0;
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},      {"B", 1},      {"KB", 1e3},     {"MB", 1e6},
                 {"GB", 1e9},  {"TB", 1e12},  {"KiB", 1024.0}, {"MiB", 1048576.0},
                 {"GiB", 1073741824.0}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i].suffix) == 0) {
            if (v < 0 || !isfinite(v) || v * units[i].mult >= limit) return -2;
            *out = (uint64_t)(v * units[i].mult);
            return 0;
        }
    return -1;
}

static int choice_ok(const char *allowed, const char *v) {
    size_t n = strlen(v);
    for (const char *p = allowed; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

static int size_number(const char *text, double *out) {
    uint64_t x;
    if (qd_parse_size(text, &x) != 0) return -1;
    *out = (double)x;
    return 0;
}

/* every numeric option states its range: a table entry without one is a programming error */
static qd_status range_of(const qd_cmd_spec *spec, const qd_opt *o, double *lo, double *hi) {
    if (qd_range_parse(o->allowed, o->kind == QD_OPT_SIZE ? size_number : NULL, lo, hi) != 0)
        return qd_fail(QD_ERR_INTERNAL, "%s: --%s: bad range '%s' in the option table", spec->name, o->name,
                       o->allowed ? o->allowed : "(none)");
    return QD_OK;
}

static qd_status out_of_range(const qd_cmd_spec *spec, const qd_opt *o, const char *v) {
    return qd_fail(QD_ERR_USAGE, "%s: --%s: %s is out of range; expected %s", spec->name, o->name, v, o->allowed);
}

static qd_status set_value(const qd_cmd_spec *spec, const qd_opt *o, const char *v) {
    switch (o->kind) {
    case QD_OPT_STR: /* every string option is a path or a name: '' is a mistake (an unset shell variable) */
        if (!*v)
            return qd_fail(QD_ERR_USAGE, "%s: --%s: empty value; expected %s", spec->name, o->name,
                           o->metavar ? o->metavar : "a value");
        *(const char **)o->target = v;
        return QD_OK;
    case QD_OPT_CHOICE:
        if (!choice_ok(o->allowed, v))
            return qd_fail(QD_ERR_USAGE, "%s: --%s: '%s' is not allowed; expected one of %s", spec->name, o->name,
                           v, o->allowed);
        *(const char **)o->target = v;
        return QD_OK;
    case QD_OPT_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (*end || end == v)
            return qd_fail(QD_ERR_USAGE, "%s: --%s: '%s' is not an integer", spec->name, o->name, v);
        if (errno == ERANGE || x < INT_MIN || x > INT_MAX) return out_of_range(spec, o, v);
        double lo, hi;
        QD_CHECK(range_of(spec, o, &lo, &hi));
        if ((double)x < lo || (double)x > hi) return out_of_range(spec, o, v);
        *(int *)o->target = (int)x;
        return QD_OK;
    }
    case QD_OPT_DOUBLE: {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (*end || end == v || isnan(x))
            return qd_fail(QD_ERR_USAGE, "%s: --%s: '%s' is not a number", spec->name, o->name, v);
        double lo, hi;
        QD_CHECK(range_of(spec, o, &lo, &hi));
        /* strtod's ERANGE is an overflow (inf) or an underflow (near 0): both are judged by the range */
        if (!isfinite(x) || x < lo || x > hi) return out_of_range(spec, o, v);
        *(double *)o->target = x;
        return QD_OK;
    }
    case QD_OPT_SIZE: {
        uint64_t x;
        int rc = qd_parse_size(v, &x);
        if (rc == -2) return out_of_range(spec, o, v);
        if (rc != 0)
            return qd_fail(QD_ERR_USAGE, "%s: --%s: '%s' is not a size (e.g. 5GB, 500MB)", spec->name, o->name, v);
        double lo, hi;
        QD_CHECK(range_of(spec, o, &lo, &hi));
        if ((double)x < lo || (double)x > hi) return out_of_range(spec, o, v);
        *(uint64_t *)o->target = x;
        return QD_OK;
    }
    case QD_OPT_FLAG:
        break;
    }
    return qd_fail(QD_ERR_INTERNAL, "%s: --%s: bad option kind", spec->name, o->name);
}

/* an option's value as given on the command line, by the setting (target) it sets */
struct given {
    void *target;
    const char *value;
};

static qd_status parse(const qd_cmd_spec *spec, int argc, char **argv, int *help_shown, struct given *given) {
    *help_shown = 0;
    int npos_max = 0;
    while (spec->positional_names && spec->positional_names[npos_max]) npos_max++;
    int npos = 0;
    for (int k = 0; k < spec->nopts; k++) {
        double lo, hi;
        if (is_numeric(spec->opts[k].kind)) QD_CHECK(range_of(spec, &spec->opts[k], &lo, &hi));
    }
    int ngiven = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            qd_args_print_help(spec);
            *help_shown = 1;
            return QD_OK;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (npos >= npos_max)
                return qd_fail(QD_ERR_USAGE, "%s: unexpected argument '%s' (usage: qdist %s %s)", spec->name, a,
                               spec->name, spec->usage);
            if (!*a)
                return qd_fail(QD_ERR_USAGE, "%s: empty %s argument (usage: qdist %s %s)", spec->name,
                               spec->positional_names[npos], spec->name, spec->usage);
            spec->positionals[npos++] = a;
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const qd_opt *o = NULL;
        int negated = 0;
        for (int k = 0; k < spec->nopts && !o; k++) {
            const qd_opt *c = &spec->opts[k];
            if (strlen(c->name) == nlen && strncmp(c->name, name, nlen) == 0) o = c;
            else if (c->kind == QD_OPT_FLAG && nlen == strlen(c->name) + 3 && strncmp(name, "no-", 3) == 0 &&
                     strncmp(name + 3, c->name, nlen - 3) == 0) {
                o = c;
                negated = 1;
            }
        }
        if (!o)
            return qd_fail(QD_ERR_USAGE, "%s: unknown option '--%.*s' (see qdist %s --help)", spec->name, (int)nlen,
                           name, spec->name);
        if (o->seen) *o->seen = 1;
        if (o->kind == QD_OPT_FLAG) {
            if (eq) return qd_fail(QD_ERR_USAGE, "%s: --%s takes no value", spec->name, o->name);
            *(int *)o->target = !negated;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc)
                return qd_fail(QD_ERR_USAGE, "%s: --%s needs a value (%s)", spec->name, o->name,
                               o->allowed ? o->allowed : (o->metavar ? o->metavar : "VALUE"));
            v = argv[++i];
        }
        /* the same setting given twice with two values (an option and its alias, too): which one the
         * user meant is a guess, so neither is taken */
        for (int k = 0; k < ngiven; k++)
            if (given[k].target == o->target && strcmp(given[k].value, v) != 0)
                return qd_fail(QD_ERR_USAGE, "%s: --%s given twice ('%s' and '%s'); give it once", spec->name,
                               o->name, given[k].value, v);
        if (ngiven < spec->nopts) given[ngiven++] = (struct given){o->target, v};
        {
            qd_status st = set_value(spec, o, v);
            if (st != QD_OK) return st;
        }
    }
    if (npos < spec->min_positionals)
        return qd_fail(QD_ERR_USAGE, "%s: missing %s (usage: qdist %s %s)", spec->name,
                       spec->positional_names[npos], spec->name, spec->usage);
    return QD_OK;
}

qd_status qd_args_parse(const qd_cmd_spec *spec, int argc, char **argv, int *help_shown) {
    struct given *given = calloc(spec->nopts > 0 ? (size_t)spec->nopts : 1, sizeof *given);
    if (!given) return qd_fail(QD_ERR_NOMEM, "%s: out of memory parsing the options", spec->name);
    qd_status st = parse(spec, argc, argv, help_shown, given);
    free(given);
    return st;
}
