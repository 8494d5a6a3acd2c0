/* SPDX-License-Identifier: MIT
 * qd-fs.h - small file-system helpers with qdist's error reporting.
 *
 * Every function reports its own failure (naming the path) and returns a qd_status.
 * qd_read_file NUL-terminates the buffer (len excludes the NUL); the caller frees it.
 * qd_write_file_atomic writes PATH.tmp.<pid>, fsyncs, then renames over PATH.
 */
#ifndef QD_FS_H
#define QD_FS_H

#include <stddef.h>
#include <stdint.h>
#include "qd-status.h"

qd_status qd_read_file(const char *path, size_t max_len, char **out, size_t *len);
qd_status qd_write_file_atomic(const char *path, const void *data, size_t len);
qd_status qd_copy_file(const char *src, const char *dst);
qd_status qd_mkdir_p(const char *path);
qd_status qd_rm_rf(const char *path);
int qd_path_exists(const char *path);
int qd_is_dir(const char *path);
/* 1 if the directory is missing or holds no entries, 0 otherwise */
int qd_dir_is_empty(const char *path);
/* bytes free to an unprivileged user on the file system holding path (or its nearest parent) */
qd_status qd_disk_free(const char *path, uint64_t *bytes);
qd_status qd_fsync_dir(const char *path);
/* snprintf into out, failing (naming both parts) if the result would not fit */
qd_status qd_path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
