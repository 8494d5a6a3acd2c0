/* SPDX-License-Identifier: MIT
 * h5stage.c - the staging directory: create / verify (fingerprint.json), resume, list staged blocks.
 * The HDF5 block files themselves are h5stage-block-write.c and h5stage-block-read.c. */
#define _DEFAULT_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "h5stage-internal.h"
#include "qd-check.h"
#include "qd-fs.h"
#include "qd-h5stage.h"
#include "qd-paths.h"

#define QD_FP_FILE "fingerprint.json"
#define QD_FP_MAX_BYTES (16u << 20)
#define QD_LOCK_FILE "lock"

const char *qd_stage_dir(const qd_stage *s) { return s->dir; }

qd_status qd__stage_block_path(const char *dir, int64_t block, const char *suffix, char *out, size_t cap) {
    if (block < 0) return qd_fail(QD_ERR_INTERNAL, "%s: negative block index %lld", dir, (long long)block);
    int n = snprintf(out, cap, "%s/block-%05lld.h5%s", dir, (long long)block, suffix);
    if (n < 0 || (size_t)n >= cap) return qd_fail(QD_ERR_USAGE, "%s: staging path too long", dir);
    return QD_OK;
}

/* "value" as it fits in a message: whole when short, else a window around the first difference */
static void shorten(const char *v, size_t diff, char *out, size_t cap) {
    size_t len = strlen(v);
    if (len <= 60) {
        snprintf(out, cap, "'%s'", v);
        return;
    }
    size_t from = diff > 20 ? diff - 20 : 0;
    size_t to = from + 40 < len ? from + 40 : len;
    snprintf(out, cap, "%s'%.*s'%s", from ? "..." : "", (int)(to - from), v + from, to < len ? "..." : "");
}

static qd_status refuse_field(const char *dir, const char *key, const char *staged, const char *now) {
    size_t diff = 0;
    if (staged && now)
        while (staged[diff] && staged[diff] == now[diff]) diff++;
    char a[160], b[160];
    if (staged) shorten(staged, diff, a, sizeof a);
    else snprintf(a, sizeof a, "(absent)");
    if (now) shorten(now, diff, b, sizeof b);
    else snprintf(b, sizeof b, "(absent)");
    return qd_fail(QD_ERR_MISMATCH,
                   "%s: cannot resume: fingerprint field '%s' differs: staged %s, this run %s "
                   "(resume with the same model, recipe, calibration and qdist version, or remove the directory)",
                   dir, key, a, b);
}

/* Compare DIR/fingerprint.json with fpr. */
static qd_status verify_fingerprint(const char *dir, const qd_fingerprint *fpr) {
    char path[4096];
    QD_CHECK(qd_path_join(path, sizeof path, dir, QD_FP_FILE));
    if (!qd_path_exists(path))
        return qd_fail(QD_ERR_USAGE,
                       "%s: not found: DIR is not a qdist staging directory, or it is not on a file system "
                       "shared by all ranks (expected the %s that rank 0 wrote)",
                       path, QD_FP_FILE);
    char *text;
    size_t len;
    QD_CHECK(qd_read_file(path, QD_FP_MAX_BYTES, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    qd_status st = QD_OK;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "fingerprint");
    if (!root || !cJSON_IsObject(root) || !cJSON_IsString(fmt) || !cJSON_IsObject(obj)) {
        st = qd_fail(QD_ERR_FORMAT, "%s: malformed: expected {\"format\":\"%s\",\"fingerprint\":{...}}", path,
                     QD_STAGE_FORMAT);
        goto done;
    }
    if (strcmp(fmt->valuestring, QD_STAGE_FORMAT) != 0) {
        st = qd_fail(QD_ERR_MISMATCH, "%s: staging format '%s', this qdist reads '%s'", path, fmt->valuestring,
                     QD_STAGE_FORMAT);
        goto done;
    }
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (!cJSON_IsString(it) || !it->string) {
            st = qd_fail(QD_ERR_FORMAT, "%s: fingerprint field '%s' is not a string", path,
                         it->string ? it->string : "?");
            goto done;
        }
    }
    /* fields in this run's order first, then fields only the staged run had */
    for (size_t i = 0; i < fpr->n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, fpr->keys[i]);
        const char *staged = v ? v->valuestring : NULL;
        if (!staged || strcmp(staged, fpr->values[i]) != 0) {
            st = refuse_field(dir, fpr->keys[i], staged, fpr->values[i]);
            goto done;
        }
    }
    for (const cJSON *it = obj->child; it; it = it->next)
        if (!qd_fingerprint_get(fpr, it->string)) {
            st = refuse_field(dir, it->string, it->valuestring, NULL);
            goto done;
        }
done:
    cJSON_Delete(root);
    return st;
}

static qd_status write_fingerprint(const char *dir, const qd_fingerprint *fpr) {
    char path[4096];
    QD_CHECK(qd_path_join(path, sizeof path, dir, QD_FP_FILE));
    cJSON *root = cJSON_CreateObject();
    int ok = root && cJSON_AddStringToObject(root, "format", QD_STAGE_FORMAT);
    cJSON *obj = ok ? cJSON_AddObjectToObject(root, "fingerprint") : NULL;
    ok = obj != NULL;
    for (size_t i = 0; ok && i < fpr->n; i++) ok = cJSON_AddStringToObject(obj, fpr->keys[i], fpr->values[i]) != NULL;
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return qd_fail(QD_ERR_NOMEM, "%s: out of memory building the fingerprint", path);
    size_t len = strlen(text);
    char *buf = malloc(len + 2);
    if (!buf) {
        cJSON_free(text);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory building the fingerprint", path);
    }
    memcpy(buf, text, len);
    buf[len] = '\n';
    cJSON_free(text);
    qd_status st = qd_write_file_atomic(path, buf, len + 1);
    free(buf);
    QD_CHECK(st);
    return qd_fsync_dir(dir);
}

/* "block-<digits>.h5" */
static int parse_block_name_any(const char *name) {
    if (strncmp(name, "block-", 6) != 0) return 0;
    const char *p = name + 6;
    while (isdigit((unsigned char)*p)) p++;
    return p > name + 6 && strcmp(p, ".h5") == 0;
}

/* names a crash may leave: block-NNNNN.h5.tmp and fingerprint.json.tmp.<pid> */
static int is_leftover(const char *name) {
    size_t n = strlen(name);
    if (strncmp(name, "block-", 6) == 0 && n > 7 && strcmp(name + n - 7, ".h5.tmp") == 0) return 1;
    return strncmp(name, QD_FP_FILE ".tmp.", sizeof QD_FP_FILE + 4) == 0;
}

static qd_status remove_leftovers(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return qd_fail(QD_ERR_IO, "%s: cannot open staging directory: %s", dir, strerror(errno));
    qd_status st = QD_OK;
    struct dirent *e;
    while (st == QD_OK && (e = readdir(d)) != NULL) {
        if (!is_leftover(e->d_name)) continue;
        char path[4096];
        st = qd_path_join(path, sizeof path, dir, e->d_name);
        if (st == QD_OK && unlink(path) != 0 && errno != ENOENT)
            st = qd_fail(QD_ERR_IO, "%s: cannot remove an interrupted write: %s", path, strerror(errno));
        else if (st == QD_OK)
            qd_info("%s: removed an interrupted write (not staged)", path);
    }
    closedir(d);
    return st;
}

static qd_status stage_new(const char *dir, int lock_fd, qd_stage **out) {
    if (strlen(dir) >= sizeof((*out)->dir) - 32) {
        if (lock_fd >= 0) close(lock_fd);
        return qd_fail(QD_ERR_USAGE, "%s: staging directory path too long", dir);
    }
    qd_stage *s = calloc(1, sizeof *s);
    if (!s) {
        if (lock_fd >= 0) close(lock_fd);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory", dir);
    }
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->lock_fd = lock_fd;
    *out = s;
    return QD_OK;
}

/* Takes DIR/lock (created when create is set and it is missing; *fd = -1 when missing and not
 * created). Refuses, naming the holder's host and pid, when another process holds it. A file system
 * without flock is warned about once and the run goes on unlocked. */
static qd_status lock_staging(const char *dir, int create, int *fd) {
    *fd = -1;
    char path[4200];
    QD_CHECK(qd_path_join(path, sizeof path, dir, QD_LOCK_FILE));
    int f = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
    if (f < 0) {
        if (errno == ENOENT && !create) return QD_OK;
        return qd_fail(QD_ERR_IO, "%s: cannot open the staging lock: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(f);
        return qd_fail(QD_ERR_IO, "%s: the staging lock is not a regular file", path);
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK || e == EAGAIN) {
            char buf[200] = "", host[100] = "?";
            long pid = 0;
            ssize_t n = pread(f, buf, sizeof buf - 1, 0);
            if (n > 0) buf[n] = '\0';
            if (sscanf(buf, "host %99s pid %ld", host, &pid) != 2) pid = 0;
            close(f);
            if (pid > 0)
                return qd_fail(QD_ERR_USAGE, "%s: in use by another qdist run (pid %ld on host %s holds %s): wait for it "
                               "to end, or give this run another --staging", dir, pid, host, path);
            return qd_fail(QD_ERR_USAGE, "%s: in use by another qdist run (it holds %s): wait for it to end, or give "
                           "this run another --staging", dir, path);
        }
        qd_warn("%s: cannot lock (%s): this file system offers no flock; make sure no other run uses this staging "
                "directory", path, strerror(e));
    }
    char host[65], text[128];
    qd_host_name(host);
    int len = snprintf(text, sizeof text, "host %s pid %ld\n", host, (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, text, (size_t)len, 0) != len) {
        int e = errno;
        close(f);
        return qd_fail(QD_ERR_IO, "%s: cannot write the staging lock: %s", path, strerror(e));
    }
    *fd = f;
    return QD_OK;
}

/* 1 when DIR is missing or holds nothing but the lock file */
static int stage_dir_is_fresh(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 1;
    struct dirent *e;
    int fresh = 1;
    while (fresh && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && strcmp(e->d_name, QD_LOCK_FILE) != 0)
            fresh = 0;
    closedir(d);
    return fresh;
}

qd_status qd_stage_open(const char *dir, const qd_fingerprint *fpr, int resume, qd_stage **out) {
    *out = NULL;
    if (!dir || !*dir) return qd_fail(QD_ERR_USAGE, "--staging: empty directory name");
    if (qd_path_exists(dir) && !qd_is_dir(dir))
        return qd_fail(QD_ERR_USAGE, "%s: --staging names a file, expected a directory", dir);
    /* a run holding the lock is named before anything else is looked at, let alone removed */
    int fd = -1;
    if (qd_path_exists(dir)) QD_CHECK(lock_staging(dir, 0, &fd));
    qd_status st = QD_OK;
    if (stage_dir_is_fresh(dir)) {
        st = qd_mkdir_p(dir);
        if (st == QD_OK && fd < 0) st = lock_staging(dir, 1, &fd);
        if (st == QD_OK) st = write_fingerprint(dir, fpr);
        if (st == QD_OK && resume) qd_info("%s: nothing staged yet: starting from the first block", dir);
    } else if (!resume) {
        st = qd_fail(QD_ERR_USAGE,
                     "%s: staging directory is not empty (a previous run?): pass --resume to continue it, or "
                     "remove the directory to start over",
                     dir);
    } else {
        st = verify_fingerprint(dir, fpr);
        if (st == QD_OK && fd < 0) st = lock_staging(dir, 1, &fd);
        if (st == QD_OK) st = remove_leftovers(dir);
    }
    if (st != QD_OK) {
        if (fd >= 0) close(fd);
        return st;
    }
    return stage_new(dir, fd, out);
}

qd_status qd_stage_attach(const char *dir, const qd_fingerprint *fpr, qd_stage **out) {
    *out = NULL;
    if (!dir || !*dir) return qd_fail(QD_ERR_USAGE, "--staging: empty directory name");
    QD_CHECK(verify_fingerprint(dir, fpr));
    return stage_new(dir, -1, out);
}

void qd_stage_close(qd_stage *s) {
    if (!s) return;
    if (s->lock_fd >= 0) close(s->lock_fd);
    free(s);
}

/* the names qdist writes into a staging directory */
static int is_stage_file(const char *name) {
    return parse_block_name_any(name) || is_leftover(name) || strcmp(name, QD_FP_FILE) == 0 ||
           strcmp(name, QD_LOCK_FILE) == 0;
}

qd_status qd_stage_remove(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? QD_OK : qd_fail(QD_ERR_IO, "%s: cannot open staging directory: %s", dir, strerror(errno));
    qd_status st = QD_OK;
    struct dirent *e;
    while (st == QD_OK && (e = readdir(d)) != NULL) {
        char path[4400];
        int meta = strcmp(e->d_name, "meta") == 0;
        if (!meta && !is_stage_file(e->d_name)) continue;
        st = qd_path_join(path, sizeof path, dir, e->d_name);
        if (st != QD_OK) break;
        if (meta) {
            st = qd_rm_rf(path); /* the directory qdist made for the export's metadata */
        } else {
            struct stat sb;
            if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) continue;
            if (unlink(path) != 0 && errno != ENOENT)
                st = qd_fail(QD_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        }
    }
    closedir(d);
    QD_CHECK(st);
    if (rmdir(dir) != 0) {
        if (errno == ENOTEMPTY || errno == EEXIST)
            qd_warn("%s: left in place: it holds files qdist did not write there", dir);
        else if (errno != ENOENT)
            return qd_fail(QD_ERR_IO, "%s: cannot remove: %s", dir, strerror(errno));
    }
    return QD_OK;
}

int qd_stage_has_block(const qd_stage *s, int64_t block) {
    char path[4200];
    if (block < 0 || snprintf(path, sizeof path, "%s/block-%05lld.h5", s->dir, (long long)block) >= (int)sizeof path)
        return 0;
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* block index of "block-<digits>.h5", or -1 */
static int64_t parse_block_name(const char *name) {
    if (strncmp(name, "block-", 6) != 0) return -1;
    const char *p = name + 6;
    int64_t v = 0;
    int nd = 0;
    while (isdigit((unsigned char)*p)) {
        if (v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*p++ - '0');
        nd++;
    }
    return nd >= 5 && strcmp(p, ".h5") == 0 ? v : -1;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

qd_status qd_stage_list(const qd_stage *s, int64_t **blocks, size_t *n) {
    *blocks = NULL;
    *n = 0;
    DIR *d = opendir(s->dir);
    if (!d) return qd_fail(QD_ERR_IO, "%s: cannot open staging directory: %s", s->dir, strerror(errno));
    int64_t *v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t b = parse_block_name(e->d_name);
        if (b < 0) continue;
        if (cnt == cap) {
            cap = cap ? 2 * cap : 64;
            int64_t *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(v);
                closedir(d);
                return qd_fail(QD_ERR_NOMEM, "%s: out of memory listing staged blocks", s->dir);
            }
            v = nv;
        }
        v[cnt++] = b;
    }
    closedir(d);
    if (cnt) qsort(v, cnt, sizeof *v, cmp_i64);
    *blocks = v;
    *n = cnt;
    return QD_OK;
}
