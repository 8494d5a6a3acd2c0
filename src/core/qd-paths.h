/* SPDX-License-Identifier: MIT
 * qd-paths.h - what qdist checks about the paths a user names, before any work.
 *
 * qd_path_canon: the absolute, symlink-free form of a path that may not exist yet (realpath of its
 * longest existing prefix, the rest appended with "." dropped and ".." going up).
 * qd_paths_disjoint: refuses (QD_ERR_USAGE, one line naming both flags) two paths that are the same
 * directory or of which one contains the other, compared on canonical forms and, for the parts that
 * exist, on device and inode (so bind mounts and hard links count too).
 * qd_same_file: 1 when both paths exist and are the same file (st_dev and st_ino).
 * qd_path_check_length: refuses a path with a component longer than NAME_MAX, a last component that
 * would pass NAME_MAX once qdist appends reserve bytes to it (OUT.qdist-tmp-..., OUT.qdist-staging),
 * or a canonical form that would pass PATH_MAX with reserve more bytes, naming the flag and the name.
 */
#ifndef QD_PATHS_H
#define QD_PATHS_H

#include <stddef.h>

#include "qd-status.h"

qd_status qd_path_canon(const char *path, char *out, size_t cap);
qd_status qd_paths_disjoint(const char *flag_a, const char *a, const char *flag_b, const char *b);
int qd_same_file(const char *a, const char *b);
qd_status qd_path_check_length(const char *flag, const char *path, size_t reserve);
/* this machine's name as qdist writes it into file names and locks: [A-Za-z0-9._-] only, <= 64 bytes */
void qd_host_name(char out[65]);

#endif
