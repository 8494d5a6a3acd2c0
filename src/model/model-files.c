/* SPDX-License-Identifier: MIT
 * The non-weight files of a Hugging Face model directory that a converted checkpoint carries over. */
#include "qd-meta-files.h"
#include "qd-model.h"

static const char *const meta_files[] = {"config.json", "generation_config.json", "tokenizer.json",
                                         "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                                         "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
                                         NULL};

qd_status qd_model_copy_meta_files(const char *src_dir, const char *dst_dir) {
    return qd_meta_files_copy(src_dir, dst_dir, meta_files);
}

qd_status qd_model_check_meta_files(const char *src_dir) { return qd_meta_files_copy(src_dir, NULL, meta_files); }
