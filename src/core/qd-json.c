/* SPDX-License-Identifier: MIT
 * qd-json.c - whole-document JSON parse with duplicate keys refused (qd-json.h). */
#include "qd-json.h"

#include <stdlib.h>
#include <string.h>

#include "qd-esc.h"
#include "qd-log.h"

static int by_key(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* the first key named twice in one object under o, or NULL; *oom set when the scratch array failed.
 * Sorting the keys keeps a tokenizer.json vocab of 10^5 entries at n log n. */
static const char *dup_key(const cJSON *o, int *oom) {
    if (!cJSON_IsObject(o) && !cJSON_IsArray(o)) return NULL;
    size_t n = 0;
    for (const cJSON *c = o->child; c; c = c->next) n++;
    if (cJSON_IsObject(o) && n > 1) {
        const cJSON **keys = malloc(n * sizeof *keys);
        if (!keys) {
            *oom = 1;
            return NULL;
        }
        size_t i = 0;
        for (const cJSON *c = o->child; c; c = c->next) keys[i++] = c;
        qsort(keys, n, sizeof *keys, by_key);
        const char *dup = NULL;
        for (i = 1; i < n && !dup; i++)
            if (strcmp(keys[i - 1]->string, keys[i]->string) == 0) dup = keys[i]->string;
        free(keys);
        if (dup) return dup;
    }
    for (const cJSON *c = o->child; c; c = c->next) { /* cJSON bounds the nesting depth (1000) */
        const char *d = dup_key(c, oom);
        if (d || *oom) return d;
    }
    return NULL;
}

qd_status qd_json_parse(const char *text, size_t len, const char *path, cJSON **out) {
    *out = NULL;
    const char *nul = memchr(text, 0, len);
    if (nul) return qd_fail(QD_ERR_FORMAT, "%s: not valid JSON (NUL byte at offset %zu)", path, (size_t)(nul - text));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root)
        return qd_fail(QD_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", path, end ? (size_t)(end - text) : (size_t)0);
    size_t at = (size_t)(end - text);
    while (at < len && strchr(" \t\r\n", text[at])) at++;
    if (at < len) {
        cJSON_Delete(root);
        return qd_fail(QD_ERR_FORMAT, "%s: not valid JSON (text after the value at byte %zu)", path, at);
    }
    int oom = 0;
    const char *dup = dup_key(root, &oom);
    if (dup || oom) {
        qd_status st = oom ? qd_fail(QD_ERR_NOMEM, "%s: out of memory checking the JSON keys", path)
                           : qd_fail(QD_ERR_FORMAT, "%s: key \"%s\" appears twice in one object (expected each key once)",
                                     path, QD_ESC(dup));
        cJSON_Delete(root);
        return st;
    }
    *out = root;
    return QD_OK;
}
