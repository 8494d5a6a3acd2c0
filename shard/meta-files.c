/* SPDX-License-Identifier: MIT */
#include "qd-meta-files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qd-check.h"
#include "qd-esc.h"
#include "qd-fs.h"
#include "qd-json.h"
#include "qd-log.h"

static const char *type_name(mode_t m) {
    return S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISSOCK(m) ? "a socket" : S_ISDIR(m) ? "a directory" : "not a regular file";
}

/* real lies under dir (dir itself excluded) */
static int under(const char *dir, size_t n, const char *real) {
    if (n == 1) return real[1] != 0; /* dir is "/" */
    return strncmp(real, dir, n) == 0 && real[n] == '/';
}

/* real lies in dir_real, or dir_real is a Hugging Face cache snapshot (REPO/snapshots/REV, whose files
 * are links into REPO/blobs) and real is one of that repository's blobs */
static int inside(const char *dir_real, const char *real) {
    if (under(dir_real, strlen(dir_real), real)) return 1;
    const char *rev = strrchr(dir_real, '/');
    if (!rev || rev == dir_real) return 0;
    size_t repo_len = (size_t)(rev - dir_real);
    static const char snap[] = "/snapshots";
    if (repo_len < sizeof snap || memcmp(rev - (sizeof snap - 1), snap, sizeof snap - 1) != 0) return 0;
    repo_len -= sizeof snap - 1;
    char blobs[PATH_MAX];
    if (repo_len + sizeof "/blobs" > sizeof blobs) return 0;
    memcpy(blobs, dir_real, repo_len);
    memcpy(blobs + repo_len, "/blobs", sizeof "/blobs");
    return under(blobs, strlen(blobs), real) && !strchr(real + strlen(blobs) + 1, '/');
}

static int is_weight_or_own(const char *n) {
    static const char *const suffixes[] = {".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json",
                                           ".pt", ".pth", ".h5", ".gguf", ".msgpack", ".ckpt"};
    size_t len = strlen(n);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t sl = strlen(suffixes[i]);
        if (len >= sl && strcmp(n + len - sl, suffixes[i]) == 0) return 1;
    }
    return strcmp(n, "config.json") == 0 || strcmp(n, "quantize_config.json") == 0 || n[0] == '.';
}

static qd_status copy_fd(int in, const char *src, int out, const char *dst) {
    char buf[1 << 16];
    uint64_t total = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return qd_fail(QD_ERR_IO, "%s: read failed: %s", QD_ESC(src), strerror(errno));
        if (r == 0) return QD_OK;
        total += (uint64_t)r;
        if (total > QD_META_FILE_MAX_BYTES)
            return qd_fail(QD_ERR_FORMAT, "%s: grew past the %llu MiB cap on a metadata file while being copied",
                           QD_ESC(src), (unsigned long long)(QD_META_FILE_MAX_BYTES >> 20));
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0)
                return qd_fail(errno == ENOSPC ? QD_ERR_NOSPACE : QD_ERR_IO, "%s: write failed: %s", QD_ESC(dst),
                               strerror(errno));
            off += w;
        }
    }
}

/* src_dir/name -> dst_dir/name (dst_dir NULL: check only); *absent = 1 when there is no such entry */
/* the check before any work: a .json file the checkpoint carries must be one JSON document (an empty or
 * cut tokenizer.json was copied as is, and the checkpoint looked complete) */
static qd_status check_json(const char *path, const char *real, const char *name) {
    size_t n = strlen(name);
    if (n < 5 || strcmp(name + n - 5, ".json") != 0) return QD_OK;
    char *text;
    size_t len;
    QD_CHECK(qd_read_file(real, QD_META_FILE_MAX_BYTES, &text, &len));
    cJSON *root = NULL;
    qd_status st = qd_json_parse(text, len, path, &root);
    cJSON_Delete(root);
    free(text);
    return st;
}

static qd_status copy_one(const char *src_dir, const char *dir_real, const char *name, const char *dst_dir,
                          int *absent) {
    char path[PATH_MAX + 256], real[PATH_MAX], dst[PATH_MAX + 256];
    *absent = 0;
    QD_CHECK(qd_path_join(path, sizeof path, src_dir, name));
    struct stat lst, st, fst;
    if (lstat(path, &lst) != 0) {
        if (errno == ENOENT) {
            *absent = 1;
            return QD_OK;
        }
        return qd_fail(QD_ERR_IO, "%s: cannot stat: %s", QD_ESC(path), strerror(errno));
    }
    if (!realpath(path, real))
        return qd_fail(QD_ERR_FORMAT, "%s: %s (%s); refusing to copy it into the checkpoint", QD_ESC(path),
                       S_ISLNK(lst.st_mode) ? "a symbolic link that leads nowhere" : "cannot resolve", strerror(errno));
    if (!inside(dir_real, real))
        return qd_fail(QD_ERR_FORMAT, "%s: a symbolic link to %s, outside the model directory; refusing to copy it "
                       "into the checkpoint (copy the file itself into %s)", QD_ESC(path), QD_ESC(real), QD_ESC(src_dir));
    if (stat(real, &st) != 0) return qd_fail(QD_ERR_IO, "%s: cannot stat: %s", QD_ESC(path), strerror(errno));
    if (!S_ISREG(st.st_mode))
        return qd_fail(QD_ERR_FORMAT, "%s: %s, not a regular file; refusing to copy it into the checkpoint",
                       QD_ESC(path), type_name(st.st_mode));
    if ((uint64_t)st.st_size > QD_META_FILE_MAX_BYTES)
        return qd_fail(QD_ERR_FORMAT, "%s: %llu bytes, over the %llu MiB cap on a metadata file (QD_META_FILE_MAX_BYTES)",
                       QD_ESC(path), (unsigned long long)st.st_size,
                       (unsigned long long)(QD_META_FILE_MAX_BYTES >> 20));
    if (!dst_dir) return check_json(path, real, name);
    int in = open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (in < 0) return qd_fail(QD_ERR_IO, "%s: cannot open: %s", QD_ESC(path), strerror(errno));
    if (fstat(in, &fst) != 0 || !S_ISREG(fst.st_mode) || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino) {
        close(in);
        return qd_fail(QD_ERR_IO, "%s: changed while being opened; refusing to copy it", QD_ESC(path));
    }
    qd_status s = qd_path_join(dst, sizeof dst, dst_dir, name);
    /* a fresh file (not one a link or an earlier copy put there), never wider than the source */
    if (s == QD_OK && unlink(dst) != 0 && errno != ENOENT)
        s = qd_fail(QD_ERR_IO, "%s: cannot replace: %s", QD_ESC(dst), strerror(errno));
    int out = -1;
    if (s == QD_OK) {
        out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, fst.st_mode & 0644);
        if (out < 0) s = qd_fail(QD_ERR_IO, "%s: cannot create: %s", QD_ESC(dst), strerror(errno));
    }
    if (s == QD_OK) s = copy_fd(in, path, out, dst);
    close(in);
    if (out >= 0) {
        if (fsync(out) != 0 && s == QD_OK) s = qd_fail(QD_ERR_IO, "%s: fsync failed: %s", QD_ESC(dst), strerror(errno));
        if (close(out) != 0 && s == QD_OK) s = qd_fail(QD_ERR_IO, "%s: close failed: %s", QD_ESC(dst), strerror(errno));
    }
    return s;
}

static qd_status copy_all(const char *src_dir, const char *dir_real, const char *dst_dir) {
    DIR *d = opendir(src_dir);
    if (!d) return qd_fail(QD_ERR_IO, "%s: cannot list the directory: %s", QD_ESC(src_dir), strerror(errno));
    qd_status st = QD_OK;
    struct dirent *e;
    char path[PATH_MAX + 256];
    while (st == QD_OK && (e = readdir(d))) {
        if (is_weight_or_own(e->d_name)) continue;
        st = qd_path_join(path, sizeof path, src_dir, e->d_name);
        struct stat s;
        if (st == QD_OK && stat(path, &s) == 0 && S_ISDIR(s.st_mode)) continue; /* sub-directories are not copied */
        int absent;
        if (st == QD_OK) st = copy_one(src_dir, dir_real, e->d_name, dst_dir, &absent);
    }
    closedir(d);
    return st;
}

qd_status qd_meta_files_copy(const char *src_dir, const char *dst_dir, const char *const *names) {
    char dir_real[PATH_MAX];
    if (!realpath(src_dir, dir_real))
        return qd_fail(QD_ERR_IO, "%s: cannot resolve the directory: %s", QD_ESC(src_dir), strerror(errno));
    if (!names) return copy_all(src_dir, dir_real, dst_dir);
    for (size_t i = 0; names[i]; i++) {
        int absent;
        QD_CHECK(copy_one(src_dir, dir_real, names[i], dst_dir, &absent));
    }
    return QD_OK;
}
