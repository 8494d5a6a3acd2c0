/* SPDX-License-Identifier: MIT
 * qd-model-handle.h - an opened model: its config, its architecture, its checkpoint headers (and
 * mapped data when opened with_data), an index of each block's tensors; and the loader that puts a
 * block's weights or the model's ends onto a backend.
 *
 * qd_model_open reads config.json once, opens the checkpoint once and checks it against the config
 * (qd_model_check_ckpt) before anything is sized from it; a run opens the model once per rank and
 * hands the handle to every phase. The handle is read-only after open and may be shared by threads.
 * The block and head loaders convert bf16/fp16 to fp32 on upload and check every shape against the
 * architecture's table; a Linear stored quantized (GPTQ, AWQ, compressed-tensors) is dequantised on
 * load (eval of an exported checkpoint). Loading needs a handle opened with_data.
 */
#ifndef QD_MODEL_HANDLE_H
#define QD_MODEL_HANDLE_H

#include <stddef.h>
#include <stdint.h>

#include "qd-backend.h"
#include "qd-model.h"

typedef struct qd_model qd_model;

qd_status qd_model_open(const char *dir, int with_data, qd_model **out);
void qd_model_close(qd_model *m);
const qd_model_cfg *qd_model_cfg_of(const qd_model *m);
const char *qd_model_dir(const qd_model *m);
/* Stored bytes of block b's tensors (the plan's cost of a block), 0 outside 0..nlayers-1. */
uint64_t qd_model_block_bytes(const qd_model *m, int b);
/* Stored bytes of every tensor of the checkpoint. */
uint64_t qd_model_total_bytes(const qd_model *m);

/* A block's weights on the device, owned by the caller, who may modify them (the quantizers replace
 * a Linear's weight by its dequantized value, AWQ rescales norms and weights). */
typedef struct qd_block_w {
    int index;
    qd_buf_t ln_in, ln_post;        /* [hidden] */
    qd_buf_t q_norm, k_norm;        /* [head_dim], Qwen3 only (else NULL) */
    qd_buf_t q_a_norm, kv_a_norm;   /* MLA: [q_lora_rank] (NULL without q compression), [kv_lora_rank] */
    qd_buf_t e_bias;                /* DeepSeek-V3 MoE block: e_score_correction_bias [experts], else NULL */
    int nlin;                       /* the block's Linear table (qd_model_linears), nlin entries: */
    qd_linear *lin;
    qd_buf_t *w;                    /* [out, in] fp32 */
    qd_buf_t *b;                    /* [out] or NULL */
    size_t *n_out, *n_in;
} qd_block_w;

qd_status qd_model_block_load(qd_backend_t be, const qd_model *m, int index, qd_block_w *out);
void qd_block_w_free(qd_block_w *w);
/* Asks the OS to start reading block index's tensors from the mapped checkpoint (madvise
 * MADV_WILLNEED, which returns at once), so that a later qd_model_block_load finds them in memory.
 * A hint only: nothing for an index outside the model or a handle without data. */
void qd_model_block_prefetch(const qd_model *m, int index);

/* The model's ends: embedding rows (gathered on the host from the mapped checkpoint, converted to
 * fp32), the final norm and lm_head (tied to the embedding when tie_word_embeddings). */
typedef struct qd_head {
    const qd_model *m;
    qd_buf_t norm;        /* [hidden] */
    qd_buf_t lm_head;     /* [vocab, hidden], NULL unless loaded with_lm_head */
} qd_head;
qd_status qd_model_head_load(qd_backend_t be, const qd_model *m, int with_lm_head, qd_head *out);
void qd_head_free(qd_head *h);
/* x [n, hidden] (device) = embedding rows of ids; ids outside the vocabulary are refused. */
qd_status qd_embed(qd_backend_t be, const qd_head *h, const int32_t *ids, size_t n, qd_ref x);

#endif
