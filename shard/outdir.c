/* SPDX-License-Identifier: MIT
 * outdir.c - an output directory that appears only when complete, and replaces only what qdist wrote.
 *
 * Everything is written into DIR.qdist-tmp-<host>-<pid> beside DIR (same file system, so the final
 * rename is atomic); commit renames it into place. Every directory written this way carries the
 * marker DIR/.qdist-output; with overwrite, an existing DIR is replaced only when it carries the
 * marker (or is empty): it is first moved aside to DIR.qdist-old-<host>-<pid> and removed only after
 * the new one is in place. The host in the temporary names lets a later run remove the leftovers of
 * a run killed on this host (its pid no longer alive) without touching a live run on another node.
 */
#define _DEFAULT_SOURCE
#include "qd-st-writer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-log.h"
#include "qd-paths.h"

#define TMP_TAG ".qdist-tmp-"
#define OLD_TAG ".qdist-old-"

struct qd_outdir {
    char final[4096];
    char tmp[4200];
    char parent[4096];
    int overwrite; /* the user's --overwrite: without it, an output that appears meanwhile is never replaced */
};

size_t qd_outdir_reserve(void) {
    char host[65];
    qd_host_name(host);
    size_t r = strlen(TMP_TAG) + strlen(host) + 1 + 10; /* ".qdist-tmp-<host>-<pid>"; ".qdist-old-" as long */
    return r > strlen(".qdist-staging") ? r : strlen(".qdist-staging");
}

int qd_outdir_has_marker(const char *dir) {
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, QD_OUTDIR_MARKER) >= (int)sizeof path) return 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return 0;
    struct stat st;
    char buf[1024];
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < (off_t)sizeof buf) n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    const cJSON *tool = cJSON_GetObjectItemCaseSensitive(j, "tool");
    int ok = cJSON_IsString(tool) && strcmp(tool->valuestring, "qdist") == 0;
    cJSON_Delete(j);
    return ok;
}

qd_status qd_outdir_check(const char *dir, int overwrite) {
    if (!dir || !*dir) return qd_fail(QD_ERR_USAGE, "--output: empty directory name");
    QD_CHECK(qd_path_check_length("--output", dir, qd_outdir_reserve()));
    if (!qd_path_exists(dir)) return QD_OK;
    if (!qd_is_dir(dir)) return qd_fail(QD_ERR_USAGE, "%s: output path exists and is not a directory", dir);
    if (qd_dir_is_empty(dir)) return QD_OK;
    if (!qd_outdir_has_marker(dir))
        return qd_fail(QD_ERR_USAGE, "%s: output directory exists, is not empty and was not written by qdist (no %s "
                       "in it): qdist replaces only its own outputs; name a new directory or empty this one yourself",
                       dir, QD_OUTDIR_MARKER);
    if (!overwrite)
        return qd_fail(QD_ERR_USAGE, "%s: output directory holds an earlier qdist output (pass --overwrite to replace "
                       "it)", dir);
    return QD_OK;
}

/* "<base>.qdist-tmp-<host>-<pid>" of a run on this host whose pid is gone: pid, else 0 */
static long stale_pid(const char *name, const char *base, const char *host) {
    size_t nb = strlen(base), nt = strlen(TMP_TAG), nh = strlen(host);
    if (strncmp(name, base, nb) != 0 || strncmp(name + nb, TMP_TAG, nt) != 0) return 0;
    const char *h = name + nb + nt;
    if (strncmp(h, host, nh) != 0 || h[nh] != '-') return 0;
    const char *p = h + nh + 1;
    char *end;
    errno = 0;
    long pid = strtol(p, &end, 10);
    if (errno || *p < '1' || *p > '9' || *end || pid <= 0 || pid > 0x7fffffffL || pid == (long)getpid()) return 0;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) return 0; /* alive, or not ours to judge */
    return pid;
}

void qd_outdir_clean_stale(const char *final_dir) {
    char final[4096], parent[4096];
    size_t n = strlen(final_dir);
    while (n > 1 && final_dir[n - 1] == '/') n--;
    if (n == 0 || n >= sizeof final) return;
    memcpy(final, final_dir, n);
    final[n] = '\0';
    const char *slash = strrchr(final, '/');
    const char *base = slash ? slash + 1 : final;
    if (!slash) snprintf(parent, sizeof parent, ".");
    else if (slash == final) snprintf(parent, sizeof parent, "/");
    else snprintf(parent, sizeof parent, "%.*s", (int)(slash - final), final);
    char host[65];
    qd_host_name(host);
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = stale_pid(e->d_name, base, host);
        if (!pid) continue;
        char path[4400];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", parent, e->d_name) >= (int)sizeof path) continue;
        /* only a real directory that qdist wrote (its marker is written first) */
        if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode) || (!qd_outdir_has_marker(path) && !qd_dir_is_empty(path)))
            continue;
        if (qd_rm_rf(path) == QD_OK)
            qd_info("%s: removed the partial output of an interrupted run (pid %ld on this host, no longer running)",
                    path, pid);
    }
    closedir(d);
}

static qd_status write_marker(const char *dir) {
    char path[4400], text[160];
    QD_CHECK(qd_path_join(path, sizeof path, dir, QD_OUTDIR_MARKER));
    int n = snprintf(text, sizeof text, "{\"tool\": \"qdist\", \"version\": \"%s\"}\n", QD_VERSION);
    return qd_write_file_atomic(path, text, (size_t)n);
}

qd_status qd_outdir_begin(const char *final_dir, int overwrite, qd_outdir **out) {
    *out = NULL;
    size_t n = final_dir ? strlen(final_dir) : 0;
    while (n > 1 && final_dir[n - 1] == '/') n--; /* "out/" and "out" are the same directory */
    if (n == 0 || n + 32 >= sizeof ((qd_outdir *)0)->final)
        return qd_fail(QD_ERR_USAGE, "output directory: bad path '%s'", final_dir ? final_dir : "");
    qd_outdir *o;
    QD_ALLOC(o, 1);
    memcpy(o->final, final_dir, n);
    o->final[n] = '\0';
    o->overwrite = overwrite;
    qd_status st = qd_outdir_check(o->final, overwrite);
    if (st != QD_OK) {
        free(o);
        return st;
    }
    char host[65];
    qd_host_name(host);
    if (snprintf(o->tmp, sizeof o->tmp, "%s" TMP_TAG "%s-%d", o->final, host, (int)getpid()) >= (int)sizeof o->tmp) {
        st = qd_fail(QD_ERR_USAGE, "%s: output path too long", o->final);
        free(o);
        return st;
    }
    snprintf(o->parent, sizeof o->parent, "%s", o->final);
    char *slash = strrchr(o->parent, '/');
    if (!slash) snprintf(o->parent, sizeof o->parent, ".");
    else if (slash == o->parent) slash[1] = '\0';
    else *slash = '\0';
    qd_outdir_clean_stale(o->final);
    /* our own name: a leftover of an earlier run on this host with the same pid, if qdist wrote it */
    struct stat sb;
    if (lstat(o->tmp, &sb) == 0 && (!S_ISDIR(sb.st_mode) || (!qd_outdir_has_marker(o->tmp) && !qd_dir_is_empty(o->tmp))))
        st = qd_fail(QD_ERR_USAGE, "%s: exists and was not written by qdist: remove or rename it", o->tmp);
    if (st == QD_OK) st = qd_rm_rf(o->tmp);
    if (st == QD_OK) st = qd_mkdir_p(o->tmp);
    if (st == QD_OK) st = write_marker(o->tmp);
    if (st != QD_OK) {
        if (lstat(o->tmp, &sb) == 0 && S_ISDIR(sb.st_mode) && (qd_outdir_has_marker(o->tmp) || qd_dir_is_empty(o->tmp)))
            qd_rm_rf(o->tmp);
        free(o);
        return st;
    }
    *out = o;
    return QD_OK;
}

const char *qd_outdir_path(const qd_outdir *o) { return o->tmp; }

qd_status qd_outdir_commit(qd_outdir *o) {
    qd_status st = qd_fsync_dir(o->tmp);
    char old[4200] = "";
    if (st == QD_OK && qd_path_exists(o->final)) {
        if (qd_dir_is_empty(o->final)) {
            if (rmdir(o->final) != 0)
                st = qd_fail(QD_ERR_IO, "%s: cannot replace the empty directory: %s", o->final, strerror(errno));
        } else if (!qd_outdir_has_marker(o->final)) { /* appeared or changed since begin */
            st = qd_outdir_check(o->final, 1);
        } else if (!o->overwrite) { /* another run (a concurrent export into the same OUT) finished first */
            st = qd_fail(QD_ERR_USAGE, "%s: another qdist run wrote this output while this one ran; it is kept "
                         "(pass --overwrite to replace it)", o->final);
        } else {
            char host[65];
            qd_host_name(host);
            if (snprintf(old, sizeof old, "%s" OLD_TAG "%s-%d", o->final, host, (int)getpid()) >= (int)sizeof old)
                st = qd_fail(QD_ERR_USAGE, "%s: output path too long", o->final);
            else if (rename(o->final, old) != 0)
                st = qd_fail(QD_ERR_IO, "%s: cannot move the old output aside: %s", o->final, strerror(errno));
            if (st != QD_OK) old[0] = '\0';
        }
    }
    if (st == QD_OK && rename(o->tmp, o->final) != 0) {
        st = qd_fail(QD_ERR_IO, "%s: rename of %s into place failed: %s", o->final, o->tmp, strerror(errno));
        if (old[0]) rename(old, o->final); /* put the old output back */
    }
    if (st == QD_OK) st = qd_fsync_dir(o->parent);
    if (st == QD_OK && old[0]) st = qd_rm_rf(old);
    if (st != QD_OK) qd_rm_rf(o->tmp);
    free(o);
    return st;
}

void qd_outdir_abort(qd_outdir *o) {
    if (!o) return;
    qd_rm_rf(o->tmp);
    free(o);
}
