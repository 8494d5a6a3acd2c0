/* SPDX-License-Identifier: MIT */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include "qd-fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "qd-log.h"

qd_status qd_read_file(const char *path, size_t max_len, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    /* O_NONBLOCK: a FIFO named like a config file must be refused, not waited on */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return qd_fail(QD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qd_fail(QD_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_len) {
        close(fd);
        return qd_fail(QD_ERR_FORMAT, "%s: file is %lld bytes, more than the %zu allowed", path,
                       (long long)st.st_size, max_len);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return qd_fail(QD_ERR_NOMEM, "%s: out of memory reading %lld bytes", path, (long long)st.st_size);
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != (size_t)st.st_size) {
        free(buf);
        return qd_fail(QD_ERR_IO, "%s: read failed", path);
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return QD_OK;
}

qd_status qd_write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return qd_fail(QD_ERR_USAGE, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return qd_fail(QD_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return qd_fail(e == ENOSPC ? QD_ERR_NOSPACE : QD_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return qd_fail(QD_ERR_IO, "%s: fsync/close failed: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return qd_fail(QD_ERR_IO, "%s: rename into place failed: %s", path, strerror(e));
    }
    return QD_OK;
}

qd_status qd_copy_file(const char *src, const char *dst) {
    int in = open(src, O_RDONLY);
    if (in < 0) return qd_fail(QD_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) {
        int e = errno;
        close(in);
        return qd_fail(QD_ERR_IO, "%s: cannot create: %s", dst, strerror(e));
    }
    char buf[1 << 16];
    qd_status st = QD_OK;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = qd_fail(QD_ERR_IO, "%s: read failed: %s", src, strerror(errno));
            break;
        }
        if (r == 0) break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                st = qd_fail(errno == ENOSPC ? QD_ERR_NOSPACE : QD_ERR_IO, "%s: write failed: %s", dst,
                             strerror(errno));
                goto done;
            }
            off += w;
        }
    }
done:
    close(in);
    if (fsync(out) != 0 && st == QD_OK) st = qd_fail(QD_ERR_IO, "%s: fsync failed: %s", dst, strerror(errno));
    if (close(out) != 0 && st == QD_OK) st = qd_fail(QD_ERR_IO, "%s: close failed: %s", dst, strerror(errno));
    return st;
}

qd_status qd_mkdir_p(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return qd_fail(QD_ERR_USAGE, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return qd_fail(QD_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    if (!qd_is_dir(path)) return qd_fail(QD_ERR_IO, "%s: exists and is not a directory", path);
    return QD_OK;
}

qd_status qd_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? QD_OK : qd_fail(QD_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return qd_fail(QD_ERR_IO, "%s: cannot open directory: %s", path, strerror(errno));
        struct dirent *e;
        qd_status rc = QD_OK;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char sub[4096];
            rc = qd_path_join(sub, sizeof sub, path, e->d_name);
            if (rc == QD_OK) rc = qd_rm_rf(sub);
            if (rc != QD_OK) break;
        }
        closedir(d);
        if (rc != QD_OK) return rc;
        if (rmdir(path) != 0) return qd_fail(QD_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        return QD_OK;
    }
    if (unlink(path) != 0) return qd_fail(QD_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return QD_OK;
}

int qd_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int qd_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int qd_dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

qd_status qd_disk_free(const char *path, uint64_t *bytes) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    struct statvfs sv;
    /* walk up to the nearest existing parent: the output directory may not exist yet */
    while (statvfs(buf, &sv) != 0) {
        char *slash = strrchr(buf, '/');
        if (!slash) {
            snprintf(buf, sizeof buf, ".");
            if (statvfs(buf, &sv) != 0) return qd_fail(QD_ERR_IO, "%s: cannot stat file system", path);
            break;
        }
        if (slash == buf) slash[1] = '\0';
        else *slash = '\0';
    }
    *bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    return QD_OK;
}

qd_status qd_fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return qd_fail(QD_ERR_IO, "%s: cannot open directory: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0 && errno != EINVAL) return qd_fail(QD_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    return QD_OK;
}

qd_status qd_path_join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return qd_fail(QD_ERR_USAGE, "path too long: %s/%s", dir, name);
    return QD_OK;
}
