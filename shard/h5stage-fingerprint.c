/* SPDX-License-Identifier: MIT
 * h5stage-fingerprint.c - the ordered (key, value) list that identifies a run, and the cheap model
 * fingerprint (file names, sizes, sha256 of the safetensors headers and of the small .json files). */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-h5stage.h"

#define QD_FP_MAX_HEADER 100000000ull   /* safetensors header limit (formats.md A) */
#define QD_FP_MAX_JSON (64ull << 20)

qd_status qd_fingerprint_add(qd_fingerprint *fpr, const char *key, const char *value) {
    if (!key || !*key) return qd_fail(QD_ERR_INTERNAL, "fingerprint: empty key");
    if (!value) return qd_fail(QD_ERR_INTERNAL, "fingerprint: key '%s' has no value", key);
    if (qd_fingerprint_get(fpr, key)) return qd_fail(QD_ERR_INTERNAL, "fingerprint: key '%s' added twice", key);
    if (fpr->n == fpr->cap) {
        size_t cap = fpr->cap ? 2 * fpr->cap : 16;
        char **k = realloc(fpr->keys, cap * sizeof *k);
        if (!k) return qd_fail(QD_ERR_NOMEM, "fingerprint: out of memory");
        fpr->keys = k;
        char **v = realloc(fpr->values, cap * sizeof *v);
        if (!v) return qd_fail(QD_ERR_NOMEM, "fingerprint: out of memory");
        fpr->values = v;
        fpr->cap = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return qd_fail(QD_ERR_NOMEM, "fingerprint: out of memory");
    }
    fpr->keys[fpr->n] = k;
    fpr->values[fpr->n] = v;
    fpr->n++;
    return QD_OK;
}

qd_status qd_fingerprint_add_sha256(qd_fingerprint *fpr, const char *key, const void *data, size_t len) {
    char hex[65];
    qd_sha256_hex(data, len, hex);
    return qd_fingerprint_add(fpr, key, hex);
}

const char *qd_fingerprint_get(const qd_fingerprint *fpr, const char *key) {
    for (size_t i = 0; i < fpr->n; i++)
        if (strcmp(fpr->keys[i], key) == 0) return fpr->values[i];
    return NULL;
}

void qd_fingerprint_free(qd_fingerprint *fpr) {
    if (!fpr) return;
    for (size_t i = 0; i < fpr->n; i++) {
        free(fpr->keys[i]);
        free(fpr->values[i]);
    }
    free(fpr->keys);
    free(fpr->values);
    memset(fpr, 0, sizeof *fpr);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* "size=<bytes> header_sha256=<hex>" of one safetensors file: reads only the 8 + N header bytes */
static qd_status st_header_value(const char *path, char *value, size_t cap) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return qd_fail(QD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return qd_fail(QD_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    unsigned char len8[8];
    if (st.st_size < 8 || pread(fd, len8, 8, 0) != 8) {
        close(fd);
        return qd_fail(QD_ERR_FORMAT, "%s: shorter than the 8-byte safetensors header length", path);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n > QD_FP_MAX_HEADER || 8 + n > (uint64_t)st.st_size) {
        close(fd);
        return qd_fail(QD_ERR_FORMAT, "%s: safetensors header length %llu exceeds the file (%lld bytes)",
                       path, (unsigned long long)n, (long long)st.st_size);
    }
    unsigned char *buf = malloc((size_t)n + 8);
    if (!buf) {
        close(fd);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory reading a %llu-byte header", path, (unsigned long long)n);
    }
    memcpy(buf, len8, 8);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + 8 + got, (size_t)n - got, (off_t)(8 + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return qd_fail(QD_ERR_IO, "%s: reading the header failed", path);
        }
        got += (size_t)r;
    }
    close(fd);
    char hex[65];
    qd_sha256_hex(buf, (size_t)n + 8, hex);
    free(buf);
    snprintf(value, cap, "size=%lld header_sha256=%s", (long long)st.st_size, hex);
    return QD_OK;
}

static qd_status json_value(const char *path, uint64_t size, char *value, size_t cap) {
    if (size > QD_FP_MAX_JSON) { /* not a config file: its size stands for it */
        snprintf(value, cap, "size=%llu", (unsigned long long)size);
        return QD_OK;
    }
    char *data;
    size_t len;
    QD_CHECK(qd_read_file(path, QD_FP_MAX_JSON, &data, &len));
    char hex[65];
    qd_sha256_hex(data, len, hex);
    free(data);
    snprintf(value, cap, "size=%zu sha256=%s", len, hex);
    return QD_OK;
}

qd_status qd_fingerprint_add_model(qd_fingerprint *fpr, const char *model_dir) {
    DIR *d = opendir(model_dir);
    if (!d) return qd_fail(QD_ERR_IO, "%s: cannot open model directory: %s", model_dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0, nst = 0;
    qd_status st = QD_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!ends_with(e->d_name, ".safetensors") && !ends_with(e->d_name, ".json")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                st = qd_fail(QD_ERR_NOMEM, "%s: out of memory listing the model files", model_dir);
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            st = qd_fail(QD_ERR_NOMEM, "%s: out of memory listing the model files", model_dir);
            break;
        }
        nst += ends_with(e->d_name, ".safetensors");
        n++;
    }
    closedir(d);
    if (st == QD_OK && nst == 0)
        st = qd_fail(QD_ERR_USAGE, "%s: no .safetensors file to fingerprint (expected a Hugging Face model directory)",
                     model_dir);
    if (st == QD_OK) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && st == QD_OK; i++) {
        char path[4096], key[512], value[256];
        QD_CHECK_GOTO(qd_path_join(path, sizeof path, model_dir, names[i]), st, done);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (ends_with(names[i], ".safetensors"))
            QD_CHECK_GOTO(st_header_value(path, value, sizeof value), st, done);
        else
            QD_CHECK_GOTO(json_value(path, (uint64_t)sb.st_size, value, sizeof value), st, done);
        snprintf(key, sizeof key, "model/%s", names[i]);
        QD_CHECK_GOTO(qd_fingerprint_add(fpr, key, value), st, done);
    }
done:
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}
