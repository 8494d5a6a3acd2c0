/* SPDX-License-Identifier: MIT
 * qd-block-sources.h - the fingerprint of the source tensor bytes a staged block was quantized from.
 *
 * When a block is quantized, qd_block_sources hashes (qd-hash64.h) every checkpoint tensor of the
 * block, right after the block's load read them (the pages are hot: no extra disk read), and the
 * text is staged with the block (block-NNNNN.h5 dataset "sources"). When --resume replays a staged
 * block it loads the block's tensors again anyway; qd_block_sources_check hashes them and refuses a
 * block whose tensors changed in place since it was staged, naming the tensor, so no checkpoint
 * mixing old and new weights is written.
 */
#ifndef QD_BLOCK_SOURCES_H
#define QD_BLOCK_SOURCES_H

#include "qd-model-ckpt.h"
#include "qd-status.h"

/* "<tensor name> <16 hex digits>\n" for each tensor of block b, in name order; free(*text). */
qd_status qd_block_sources(const qd_model_cfg *cfg, const qd_checkpoint *ck, int b, char **text);
/* qd_block_sources on a thread of its own, started right after the block's load so that hashing a
 * large block (GB/s on one core: about a second for a Mixtral-8x7B block) overlaps its compute instead
 * of preceding its staging. join waits for it and hands over its status and *text (free it); a job
 * whose thread could not start computes the text at join. join(NULL) gives QD_OK and *text NULL. */
typedef struct qd_block_sources_job qd_block_sources_job;
qd_status qd_block_sources_start(const qd_model_cfg *cfg, const qd_checkpoint *ck, int b, qd_block_sources_job **out);
qd_status qd_block_sources_join(qd_block_sources_job *job, char **text);
/* QD_OK when staged equals now; else one QD_ERR_MISMATCH line naming the first tensor that changed,
 * appeared or disappeared (staged NULL: a block staged without the record is refused too). */
qd_status qd_block_sources_check(const qd_checkpoint *ck, int b, const char *staged, const char *now,
                                 const char *stage_dir);

#endif
