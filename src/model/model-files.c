/* SPDX-License-Identifier: MIT
 * The non-weight files of a Hugging Face model directory that a converted checkpoint carries over. */
#include "qd-check.h"
#include "qd-fs.h"
#include "qd-model.h"

qd_status qd_model_copy_meta_files(const char *src_dir, const char *dst_dir) {
    static const char *const files[] = {"config.json", "generation_config.json", "tokenizer.json",
                                        "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                                        "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja"};
    char a[4096], b[4096];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        QD_CHECK(qd_path_join(a, sizeof a, src_dir, files[i]));
        if (!qd_path_exists(a)) continue;
        QD_CHECK(qd_path_join(b, sizeof b, dst_dir, files[i]));
        QD_CHECK(qd_copy_file(a, b));
    }
    return QD_OK;
}
