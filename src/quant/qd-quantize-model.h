/* SPDX-License-Identifier: MIT
 * qd-quantize-model.h - quantizing a whole checkpoint in one process and writing the fake-quant model.
 *
 * Embeds the calibration ids, runs qd_quantize_block block after block, and streams the output
 * through an atomic output directory (shard/qd-st-writer.h): quantized Linears as F32 dequantized
 * weights (scales rounded to opts.q.scale_dtype) plus "<prefix>.qd_codes" U8 [N,K], ".qd_scales" F32
 * [G,N], ".qd_zeros" I32 [G,N], ".qd_g_idx" I32 [K]; every other block tensor in its source dtype
 * from the device copy (AWQ rescales norms); the rest copied byte for byte. config.json, generation
 * and tokenizer files are copied; OUT/qdist_report.json records every module (docs/numerics.md).
 */
#ifndef QD_QUANTIZE_MODEL_H
#define QD_QUANTIZE_MODEL_H

#include "qd-quantize.h"

typedef struct qd_quantize_model_opts {
    const char *model_dir, *output_dir;
    int overwrite;
    qd_quantize_opts q;        /* q.nseq / q.seq_len describe calib_ids */
    const int32_t *calib_ids;  /* q.nseq * q.seq_len, NULL for RTN without calibration */
    const char *calib_path, *calib_mode, *calib_sha256;
    uint64_t seed;
    const char *recipe_path;   /* informational */
} qd_quantize_model_opts;

qd_status qd_quantize_model(qd_backend_t be, const qd_quantize_model_opts *o);

#endif
