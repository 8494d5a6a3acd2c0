/* SPDX-License-Identifier: MIT
 * qd-meta-files.h - carrying a model's non-weight files (configs, tokenizer files, chat template)
 * into a checkpoint: the one routine both `quantize` (model -> output, model -> staging) and `export`
 * (fake or staging directory -> checkpoint) use.
 *
 * Only regular files whose real path lies inside src_dir are copied. A symbolic link leading outside
 * src_dir, a dangling link, a FIFO, a device or a socket is refused with one line naming the file
 * (never dropped in silence: a checkpoint without its tokenizer looks complete but is not), and so is
 * a file over QD_META_FILE_MAX_BYTES. Nothing is opened in a way that can block (the type is checked
 * first, and the open is O_NONBLOCK | O_NOFOLLOW with an fstat of the descriptor). The copy's
 * permission bits are the source's masked to 0644 at most (and the umask applies).
 *
 * names: the NULL-terminated list of names to copy where present, or NULL for every entry that is
 * not a weight file, a config qdist writes itself (config.json, quantize_config.json), a dot-file
 * or a directory. dst_dir NULL checks without writing (for a refusal before any work); the check also
 * parses every *.json file (qd-json.h), so that a checkpoint never carries an empty or cut one.
 */
#ifndef QD_META_FILES_H
#define QD_META_FILES_H

#include <stdint.h>
#include "qd-status.h"

/* tokenizer.json files reach ~30 MB */
#define QD_META_FILE_MAX_BYTES ((uint64_t)64 << 20)

qd_status qd_meta_files_copy(const char *src_dir, const char *dst_dir, const char *const *names);

#endif
