/* SPDX-License-Identifier: MIT
 * st-header.c - safetensors headers, shard names and the index, shared by both writers (st-header.h). */
#include "st-header.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-log.h"

qd_status qd_st_open_check(const char *dir, const char *prefix, uint64_t max_shard_bytes) {
    if (!qd_is_dir(dir)) return qd_fail(QD_ERR_IO, "%s: output directory does not exist", dir);
    if (!prefix || !prefix[0] || strchr(prefix, '/') || strlen(prefix) > 64)
        return qd_fail(QD_ERR_USAGE, "safetensors writer: bad shard prefix '%s' (a short file name part)",
                       prefix ? prefix : "(null)");
    if (max_shard_bytes == 0) return qd_fail(QD_ERR_USAGE, "safetensors writer: max shard size must be positive");
    return QD_OK;
}

static qd_status entry_check(const char *name, qd_dtype dtype, int ndim, const int64_t *shape, uint64_t nbytes) {
    if ((unsigned)dtype >= QD_DT_COUNT || ndim < 0 || ndim > 8 || !name || strcmp(name, "__metadata__") == 0)
        return qd_fail(QD_ERR_INTERNAL, "safetensors writer: tensor '%s': bad dtype, rank or name", name ? name : "(null)");
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0 || __builtin_mul_overflow(numel, (uint64_t)shape[d], &numel))
            return qd_fail(QD_ERR_INTERNAL, "safetensors writer: tensor '%s': bad shape", name);
    uint64_t bits = numel * qd_dtype_bits(dtype);
    if (bits % 8 != 0 || bits / 8 != nbytes)
        return qd_fail(QD_ERR_INTERNAL, "safetensors writer: tensor '%s': %llu bytes given, %s with %llu elements needs %llu",
                       name, (unsigned long long)nbytes, qd_dtype_name(dtype), (unsigned long long)numel,
                       (unsigned long long)(bits / 8));
    return QD_OK;
}

qd_status qd_st_entries_add(qd_st_entries *l, const char *name, qd_dtype dtype, int ndim, const int64_t *shape,
                            uint64_t nbytes) {
    QD_CHECK(entry_check(name, dtype, ndim, shape, nbytes));
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->e[i].name, name) == 0)
            return qd_fail(QD_ERR_INTERNAL, "safetensors writer: tensor '%s' added twice", name);
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        qd_st_entry *ne = realloc(l->e, cap * sizeof *ne);
        if (!ne) return qd_fail(QD_ERR_NOMEM, "safetensors writer: out of memory");
        l->e = ne;
        l->cap = cap;
    }
    qd_st_entry *e = &l->e[l->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return qd_fail(QD_ERR_NOMEM, "safetensors writer: out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    e->end = nbytes;
    l->n++;
    return QD_OK;
}

void qd_st_entries_free(qd_st_entries *l) {
    for (size_t i = 0; i < l->n; i++) free(l->e[i].name);
    free(l->e);
    memset(l, 0, sizeof *l);
}

/* JSON string body with the escapes JSON requires; the caller adds the quotes */
static void json_escape(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
}

qd_status qd_st_header_build(const qd_st_entry *e, size_t n, const char *dir, char **out, size_t *len) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return qd_fail(QD_ERR_NOMEM, "%s: out of memory building a shard header", dir);
    fputs("{\"__metadata__\":{\"format\":\"pt\"}", f);
    for (size_t i = 0; i < n; i++) {
        fputs(",\"", f);
        json_escape(f, e[i].name);
        fprintf(f, "\":{\"dtype\":\"%s\",\"shape\":[", qd_dtype_name(e[i].dtype));
        for (int d = 0; d < e[i].ndim; d++) fprintf(f, "%s%lld", d ? "," : "", (long long)e[i].shape[d]);
        fprintf(f, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)e[i].begin, (unsigned long long)e[i].end);
    }
    fputc('}', f);
    long pos = ftell(f);
    while (pos >= 0 && pos % 8 != 0) {
        fputc(' ', f);
        pos++;
    }
    if (fclose(f) != 0 || pos < 0 || !buf) {
        free(buf);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory building a shard header", dir);
    }
    *out = buf;
    *len = size;
    return QD_OK;
}

void qd_st_shard_name(const char *prefix, int i, int nshards, char out[128]) {
    if (nshards == 1) snprintf(out, 128, "%s.safetensors", prefix);
    else snprintf(out, 128, "%s-%05d-of-%05d.safetensors", prefix, i + 1, nshards);
}

qd_status qd_st_index_write(const char *dir, const char *prefix, const qd_st_entry *e, size_t n,
                            char (*names)[128]) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += e[i].end - e[i].begin;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON *wm = cJSON_AddObjectToObject(root, "weight_map");
    int ok = root && meta && wm && cJSON_AddNumberToObject(meta, "total_size", (double)total);
    for (size_t i = 0; ok && i < n; i++) ok = cJSON_AddStringToObject(wm, e[i].name, names[e[i].shard]) != NULL;
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return qd_fail(QD_ERR_NOMEM, "%s: out of memory building the index", dir);
    char path[4096], idx_name[128];
    snprintf(idx_name, sizeof idx_name, "%s.safetensors.index.json", prefix);
    qd_status st = qd_path_join(path, sizeof path, dir, idx_name);
    if (st == QD_OK) st = qd_write_file_atomic(path, text, strlen(text));
    free(text);
    return st;
}
