/* SPDX-License-Identifier: MIT
 * qd-paths.c - path overlap, identity and length checks (qd-paths.h). */
#define _DEFAULT_SOURCE
#include "qd-paths.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qd-log.h"

/* drop the last component of an absolute path in place ("/a/b" -> "/a", "/a" -> "/") */
static void pop_component(char *p) {
    char *slash = strrchr(p, '/');
    if (!slash || slash == p) strcpy(p, "/");
    else *slash = '\0';
}

qd_status qd_path_canon(const char *path, char *out, size_t cap) {
    if (!path || !*path) return qd_fail(QD_ERR_USAGE, "empty path");
    char abs[PATH_MAX * 2];
    if (path[0] == '/') {
        if (snprintf(abs, sizeof abs, "%s", path) >= (int)sizeof abs) return qd_fail(QD_ERR_USAGE, "%s: path too long", path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return qd_fail(QD_ERR_IO, "cannot read the current directory: %s", strerror(errno));
        if (snprintf(abs, sizeof abs, "%s/%s", cwd, path) >= (int)sizeof abs)
            return qd_fail(QD_ERR_USAGE, "%s: path too long", path);
    }
    /* the longest prefix realpath resolves; the components after it do not exist yet */
    size_t split = strlen(abs);
    char head[PATH_MAX * 2], real[PATH_MAX];
    for (;;) {
        memcpy(head, abs, split);
        head[split] = '\0';
        if (split == 0) strcpy(head, "/");
        if (realpath(head, real)) break;
        if (split == 0) return qd_fail(QD_ERR_IO, "%s: cannot resolve: %s", path, strerror(errno));
        while (split > 0 && abs[split - 1] == '/') split--;
        while (split > 0 && abs[split - 1] != '/') split--;
    }
    char res[PATH_MAX * 2];
    snprintf(res, sizeof res, "%s", real);
    const char *p = abs + split;
    while (*p) {
        while (*p == '/') p++;
        size_t n = strcspn(p, "/");
        if (n == 0) break;
        if (n == 1 && p[0] == '.') {
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            pop_component(res);
        } else {
            size_t len = strlen(res);
            if (len + n + 2 > sizeof res) return qd_fail(QD_ERR_USAGE, "%s: path too long", path);
            if (len > 1) res[len++] = '/';
            memcpy(res + len, p, n);
            res[len + n] = '\0';
        }
        p += n;
    }
    if (strlen(res) >= cap) return qd_fail(QD_ERR_USAGE, "%s: path too long", path);
    memcpy(out, res, strlen(res) + 1);
    return QD_OK;
}

static int same_inode(const struct stat *a, const char *path) {
    struct stat b;
    return stat(path, &b) == 0 && a->st_dev == b.st_dev && a->st_ino == b.st_ino;
}

/* 1 when outer (canonical) is inner (canonical) or one of its ancestors, by name or by inode */
static int contains(const char *outer, const char *inner) {
    size_t n = strlen(outer);
    if (strcmp(outer, "/") == 0) return 1;
    if (strncmp(outer, inner, n) == 0 && (inner[n] == '\0' || inner[n] == '/')) return 1;
    struct stat so;
    if (stat(outer, &so) != 0) return 0;
    char cur[PATH_MAX * 2];
    snprintf(cur, sizeof cur, "%s", inner);
    for (;;) {
        if (same_inode(&so, cur)) return 1;
        if (strcmp(cur, "/") == 0) return 0;
        pop_component(cur);
    }
}

qd_status qd_paths_disjoint(const char *flag_a, const char *a, const char *flag_b, const char *b) {
    char ca[PATH_MAX * 2], cb[PATH_MAX * 2];
    qd_status st = qd_path_canon(a, ca, sizeof ca);
    if (st == QD_OK) st = qd_path_canon(b, cb, sizeof cb);
    if (st != QD_OK) return st;
    int ab = contains(ca, cb), ba = contains(cb, ca);
    if (ab && ba)
        return qd_fail(QD_ERR_USAGE, "%s %s and %s %s are the same directory (%s): they must not overlap", flag_a, a,
                       flag_b, b, ca);
    if (ab)
        return qd_fail(QD_ERR_USAGE, "%s %s contains %s %s: they must not overlap", flag_a, a, flag_b, b);
    if (ba)
        return qd_fail(QD_ERR_USAGE, "%s %s is inside %s %s: they must not overlap", flag_a, a, flag_b, b);
    return QD_OK;
}

int qd_same_file(const char *a, const char *b) {
    struct stat sa;
    return stat(a, &sa) == 0 && same_inode(&sa, b);
}

qd_status qd_path_check_length(const char *flag, const char *path, size_t reserve) {
    size_t total = strlen(path);
    const char *p = path, *last = path;
    size_t last_n = 0;
    while (*p) {
        while (*p == '/') p++;
        size_t n = strcspn(p, "/");
        if (n == 0) break;
        if (n > NAME_MAX)
            return qd_fail(QD_ERR_USAGE, "%s %s: the name '%.*s' is %zu bytes, a file name holds at most %d", flag, path,
                           (int)n, p, n, NAME_MAX);
        last = p;
        last_n = n;
        p += n;
    }
    if (last_n + reserve > NAME_MAX)
        return qd_fail(QD_ERR_USAGE, "%s %s: the name '%.*s' is %zu bytes, at most %zu fit (qdist adds up to %zu bytes to "
                       "it for its temporary names)", flag, path, (int)last_n, last, last_n,
                       (size_t)NAME_MAX - reserve, reserve);
    char canon[PATH_MAX * 2];
    if (qd_path_canon(path, canon, sizeof canon) == QD_OK) total = strlen(canon);
    if (total + reserve >= PATH_MAX) {
        size_t n = strlen(path); /* the whole path would not fit one message line: its two ends */
        return qd_fail(QD_ERR_USAGE, "%s %.60s%s%s: the path is %zu bytes, at most %zu fit (PATH_MAX %d, and qdist adds "
                       "up to %zu bytes below it)", flag, path, n > 120 ? "..." : "", n > 120 ? path + n - 60 : path + (n > 60 ? 60 : n),
                       total, (size_t)PATH_MAX - 1 - reserve, PATH_MAX, reserve);
    }
    return QD_OK;
}

void qd_host_name(char out[65]) {
    char h[256] = "";
    if (gethostname(h, sizeof h - 1) != 0 || !h[0]) snprintf(h, sizeof h, "localhost");
    size_t j = 0;
    for (size_t i = 0; h[i] && j < 64; i++) {
        char c = h[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
        out[j++] = ok ? c : '_';
    }
    out[j] = '\0';
}
