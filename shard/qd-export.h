/* SPDX-License-Identifier: MIT
 * qd-export.h - writing a quantization run as a checkpoint that vLLM and transformers load:
 * GPTQ v1 ("gptq") and v2 ("gptq_v2"), AutoAWQ GEMM ("awq"), compressed-tensors pack-quantized
 * (or naive-quantized int8 form) - docs/reference/formats.md sections B-D and F; docs/formats.md.
 *
 * qd_export_run reads a qd_qsource (qd-qsource.h) and writes OUT through the atomic writer: sharded
 * safetensors + index, config.json with quantization_config (GPTQ: also quantize_config.json), every
 * other non-weight file of the source's meta dir (generation_config.json, tokenizer files,
 * qdist_report.json) copied. Non-quantized tensors keep their dtype; scales are F16 (GPTQ/AWQ) or the
 * model dtype (compressed-tensors, as llm-compressor does: F32 for fp32 models).
 *
 * Before writing anything it refuses, in one line naming the module and the formats that can:
 * a scheme the format cannot express (AWQ: not 4-bit, no zero point, group size -1, act-order g_idx,
 * differing group sizes; GPTQ: bits outside 2/3/4/8, v1 with an asymmetric zero point of 0;
 * compressed-tensors pack-quantized: 3 bits), --lm-head when lm_head was not quantized, a non-empty OUT
 * without overwrite, and too little free disk (with the numbers). A layer whose SHAPE the format cannot
 * pack (GPTQ: K*b or N*b not a multiple of 32; AWQ: N % 8, K % group) is written unquantized (its
 * dequantised weight in the model dtype) and declared so (GPTQ "dynamic" "-:", AWQ
 * "modules_to_not_convert", compressed-tensors "ignore"), with a warning.
 */
#ifndef QD_EXPORT_H
#define QD_EXPORT_H

#include <stdint.h>

#include "qd-qsource.h"
#include "qd-scheme.h"
#include "qd-safetensors.h"
#include "qd-status.h"

/* QD_EXPORT_FAKE: qdist's own fake-quant directory (export-fake.c), what `qdist export` reads: every
 * quantized Linear as "<prefix>.weight" F32 (dequantised with the run's rounded scales) plus
 * ".qd_codes" U8 [N,K], ".qd_scales" F32 [G,N], ".qd_zeros" I32 [G,N], ".qd_g_idx" I32 [K]; every other
 * tensor as the source holds it; config.json unchanged. It stores every scheme. */
typedef enum { QD_EXPORT_GPTQ, QD_EXPORT_GPTQ_V2, QD_EXPORT_AWQ, QD_EXPORT_CT, QD_EXPORT_FAKE } qd_export_format;

typedef struct qd_export_opts {
    const char *out_dir;
    qd_export_format format;
    int ct_naive;             /* compressed-tensors: naive-quantized (I8 weight) instead of pack-quantized */
    uint64_t max_shard_bytes; /* 0: QD_DEFAULT_MAX_SHARD_BYTES */
    int overwrite;
    int lm_head;              /* export lm_head quantized (it must have been quantized) */
    int verify;               /* after writing, read OUT back (qd-qformat-read.h) and compare every Linear */
} qd_export_opts;

/* "gptq" | "gptq_v2" | "awq" | "compressed-tensors" | "fake" */
qd_status qd_export_format_parse(const char *s, qd_export_format *out);
const char *qd_export_format_name(qd_export_format f);

/* Scheme check the quantize command calls before any work: can `format` express bits / group_size /
 * sym / act-order (act_order without static_groups = non-sequential g_idx)? Fails with one line
 * naming the formats that can. */
qd_status qd_export_check_scheme(qd_export_format f, int ct_naive, int bits, int group_size, int sym,
                                 int nonseq_g_idx);
/* The same, with `who` (" (module X ...)") appended to the scheme in the message. */
qd_status qd_export_check_module_scheme(qd_export_format f, int ct_naive, int bits, int group_size, int sym,
                                        int nonseq_g_idx, const char *who);

/* A scheme other than wna16 (qd-scheme.h) in format f: compressed-tensors (float-quantized,
 * int-quantized) and fake hold them, GPTQ and AWQ do not (a usage error naming the module in who). */
qd_status qd_export_check_qscheme(qd_export_format f, qd_scheme scheme, const char *who);

/* Bytes the export of a Linear W[N][K] takes (packed weights, zeros, scales, g_idx). */
uint64_t qd_export_linear_bytes(qd_export_format f, int ct_naive, int N, int K, int bits, int group_size,
                                int sym, int with_g_idx, unsigned scale_bytes);
/* Refuse (QD_ERR_NOSPACE, with the numbers) when `need` bytes (+1% margin) do not fit beside out_dir. */
qd_status qd_export_check_space(const char *out_dir, uint64_t need);

/* The checkpoint formats (not QD_EXPORT_FAKE). */
qd_status qd_export_run(const qd_export_opts *o, const qd_qsource *src);
/* QD_EXPORT_FAKE: tensors in the order of the source checkpoint ck (the run's, opened once: its
 * headers are enough; block by block, then the rest); o->ct_naive, lm_head and verify do not apply. */
qd_status qd_export_fake(const qd_export_opts *o, const qd_qsource *src, const qd_checkpoint *ck);

/* Read every quantized layer of src back from the export in dir through qd_qformat_read_linear and
 * compare with (code - zero) * scale computed with the scale as stored (F16 / model dtype), or, for
 * layers written unquantized, that product rounded to the model dtype: bit-exact or QD_ERR_MISMATCH
 * naming the module and the largest difference. */
qd_status qd_export_verify(const char *dir, const qd_qsource *src);

#endif
