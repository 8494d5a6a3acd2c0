/* SPDX-License-Identifier: MIT
 * qd-model-ckpt.h - the model's checkpoint, for the code that reads or writes files (shard/, mpi/,
 * the commands): the algorithms (src/forward, src/quant, src/eval) use qd-model-handle.h only.
 */
#ifndef QD_MODEL_CKPT_H
#define QD_MODEL_CKPT_H

#include "qd-model-handle.h"
#include "qd-safetensors.h"

/* The checkpoint holds exactly the blocks 0..num_hidden_layers-1, each with every tensor its
 * architecture's table (qd-arch.h) lists for the config, in a float dtype and the shape the config
 * gives (a quantized config: any stored form of a Linear), plus the embedding and final norm. Called
 * before any work by quantize, eval, export and inspect (qd_model_open does); the error names the file,
 * the tensor and the config fields that disagree. Reads headers only.
 * warn = 1 (inspect, which shows partial checkpoints too): the first mismatch is printed as a warning. */
qd_status qd_model_check_ckpt(const qd_model_cfg *cfg, const qd_checkpoint *ck, int warn);

/* An FP8 source's scale values (every F8_E4M3 Linear's: finite and >= 0), read before a run's work so
 * that a bad one fails at once, naming the tensor (the scales are ~1/16384 of the weights' bytes). */
qd_status qd_model_check_fp8_values(const qd_model_cfg *cfg, const qd_checkpoint *ck);

/* The checkpoint a handle holds (mapped when opened with_data). */
const qd_checkpoint *qd_model_ckpt(const qd_model *m);

#endif
