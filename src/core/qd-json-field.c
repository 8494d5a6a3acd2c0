/* SPDX-License-Identifier: MIT
 * qd-json-field.c - the strict typed field readers of qd-json.h: one message shape for every JSON a
 * user or another tool wrote ("<file>: <path> is <what it is>; expected <what>"). */
#include "qd-json.h"

#include <stdio.h>
#include <string.h>

#include "qd-check.h"
#include "qd-esc.h"
#include "qd-log.h"

const char *qd_json_what(const cJSON *v, char *buf, size_t n) {
    if (!v) return "missing";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsTrue(v)) return "true";
    if (cJSON_IsFalse(v)) return "false";
    if (cJSON_IsNumber(v)) snprintf(buf, n, "the number %.17g", v->valuedouble);
    else if (cJSON_IsString(v)) snprintf(buf, n, "the string \"%.40s\"%s", QD_ESC(v->valuestring),
                                         strlen(v->valuestring) > 40 ? "..." : "");
    else if (cJSON_IsArray(v)) return "an array";
    else if (cJSON_IsObject(v)) return "an object";
    else return "not a JSON value";
    return buf;
}

qd_status qd_json_bad(qd_json_at at, const char *name, const cJSON *v, const char *expected) {
    char buf[96];
    /* obj and name may hold keys of the file (a group, a module, a vocab token): escaped */
    return qd_fail(QD_ERR_FORMAT, "%s: %s%s%s is %s; expected %s", at.file, QD_ESC(at.obj), at.obj[0] ? "." : "",
                   QD_ESC(name), qd_json_what(v, buf, sizeof buf), expected);
}

/* the value of key in o (NULL when o is not an object); absent() says whether it counts as not given */
static const cJSON *item(const cJSON *o, const char *key) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static int absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

static void int_expect(char *buf, size_t n, int lo, int hi) {
    if (hi == INT_MAX) snprintf(buf, n, "an integer >= %d", lo);
    else snprintf(buf, n, "an integer in %d..%d", lo, hi);
}

qd_status qd_json_int_v(qd_json_at at, const char *name, const cJSON *v, int lo, int hi, int def, int *out) {
    char exp[64];
    int_expect(exp, sizeof exp, lo, hi);
    if (absent(v)) {
        if (def == QD_JSON_REQ_INT) return qd_json_bad(at, name, v, exp);
        *out = def;
        return QD_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (!cJSON_IsNumber(v) || !(d >= lo && d <= hi) || d != (double)(int)d) return qd_json_bad(at, name, v, exp);
    *out = (int)d;
    return QD_OK;
}

qd_status qd_json_int(qd_json_at at, const cJSON *o, const char *key, int lo, int hi, int def, int *out) {
    return qd_json_int_v(at, key, item(o, key), lo, hi, def, out);
}

qd_status qd_json_num(qd_json_at at, const cJSON *o, const char *key, double lo, double hi, double def, double *out) {
    char exp[80];
    snprintf(exp, sizeof exp, "a finite number in %g..%g", lo, hi);
    const cJSON *v = item(o, key);
    if (absent(v)) {
        if (isnan(def)) return qd_json_bad(at, key, v, exp);
        *out = def;
        return QD_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return qd_json_bad(at, key, v, exp);
    *out = v->valuedouble;
    return QD_OK;
}

qd_status qd_json_bool(qd_json_at at, const cJSON *o, const char *key, int def, int *out) {
    const cJSON *v = item(o, key);
    if (absent(v)) {
        if (def == QD_JSON_REQ_BOOL) return qd_json_bad(at, key, v, "true or false");
        *out = def;
        return QD_OK;
    }
    if (!cJSON_IsBool(v)) return qd_json_bad(at, key, v, "true or false");
    *out = cJSON_IsTrue(v);
    return QD_OK;
}

qd_status qd_json_str(qd_json_at at, const cJSON *o, const char *key, int required, const char **out) {
    const cJSON *v = item(o, key);
    *out = NULL;
    if (absent(v) && !required) return QD_OK;
    if (!cJSON_IsString(v)) return qd_json_bad(at, key, v, "a string");
    *out = v->valuestring;
    return QD_OK;
}

qd_status qd_json_node(qd_json_at at, const cJSON *o, const char *key, int type, int required, const cJSON **out) {
    const cJSON *v = item(o, key);
    *out = NULL;
    if (absent(v) && !required) return QD_OK;
    if (absent(v) || (v->type & 0xff) != type)
        return qd_json_bad(at, key, v, type == cJSON_Array ? "an array" : "an object");
    *out = v;
    return QD_OK;
}

/* "AxB", two decimal integers in lo..hi, into pair: 0 when it is not that */
static int rxc(const char *s, int lo, int hi, int pair[2]) {
    for (int i = 0; i < 2; i++) {
        long v = 0;
        const char *d = s;
        while (*s >= '0' && *s <= '9' && v <= hi) v = v * 10 + (*s++ - '0');
        if (s == d || v < lo || v > hi || *s != (i == 0 ? 'x' : '\0')) return 0;
        pair[i] = (int)v;
        s++;
    }
    return 1;
}

qd_status qd_json_pair(qd_json_at at, const cJSON *o, const char *key, int lo, int hi, int flags, int out[2]) {
    const cJSON *v = item(o, key);
    char exp[128];
    snprintf(exp, sizeof exp, "[rows, cols], two integers in %d..%d%s", lo, hi,
             flags & QD_JSON_PAIR_RXC ? " (or the string \"<rows>x<cols>\")" : "");
    if (absent(v) && !(flags & QD_JSON_REQUIRED)) return QD_OK;
    int pair[2];
    if (cJSON_IsString(v) && (flags & QD_JSON_PAIR_RXC)) {
        if (!rxc(v->valuestring, lo, hi, pair)) return qd_json_bad(at, key, v, exp);
        out[0] = pair[0], out[1] = pair[1];
        return QD_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2) return qd_json_bad(at, key, v, exp);
    for (int i = 0; i < 2; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s[%d]", key, i);
        QD_CHECK(qd_json_int_v(at, name, cJSON_GetArrayItem(v, i), lo, hi, QD_JSON_REQ_INT, &pair[i]));
    }
    out[0] = pair[0], out[1] = pair[1];
    return QD_OK;
}
