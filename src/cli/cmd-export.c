/* SPDX-License-Identifier: MIT
 * qdist export - turn a fake-quant directory (qdist quantize --format fake) into a checkpoint vLLM and
 * transformers load: GPTQ v1/v2, AWQ GEMM or compressed-tensors (shard/qd-export.h, docs/formats.md).
 * `qdist quantize --format gptq|awq|compressed-tensors` runs the same export internally. */
#include <string.h>

#include "qd-args.h"
#include "qd-check.h"
#include "qd-commands.h"
#include "qd-export.h"
#include "qd-log.h"
#include "qd-model.h"
#include "qd-paths.h"
#include "qd-qsource.h"
#include "qd-st-writer.h"

qd_status qd_cmd_export(int argc, char **argv) {
    const char *input = NULL, *output = NULL, *format = NULL, *ct_format = "pack-quantized";
    uint64_t max_shard = QD_DEFAULT_MAX_SHARD_BYTES;
    int overwrite = 0, lm_head = 0, verify = 0, quiet = 0;
    const qd_opt opts[] = {
        {"input", QD_OPT_STR, &input, "FAKE_DIR", "fake-quant directory written by qdist quantize --format fake", NULL, NULL},
        {"output", QD_OPT_STR, &output, "OUT", "output checkpoint directory (must not exist or be empty)", NULL, NULL},
        {"format", QD_OPT_CHOICE, &format, "FMT", "checkpoint format", "gptq|gptq_v2|awq|compressed-tensors", NULL},
        {"ct-format", QD_OPT_CHOICE, &ct_format, "F",
         "compressed-tensors layout: pack-quantized (vLLM, default) or naive-quantized (int8 weights)",
         "pack-quantized|naive-quantized", NULL},
        {"max-shard-size", QD_OPT_SIZE, &max_shard, "SIZE", "largest safetensors shard (default 5GB)", "1KB..1000TB", NULL},
        {"overwrite", QD_OPT_FLAG, &overwrite, NULL, "replace a non-empty OUT", NULL, NULL},
        {"lm-head", QD_OPT_FLAG, &lm_head, NULL, "keep a quantized lm_head quantized (qdist quantize never quantizes lm_head: for fake dirs from elsewhere)", NULL, NULL},
        {"verify", QD_OPT_FLAG, &verify, NULL, "read OUT back (dequantise on load) and compare every Linear bit for bit",
         NULL, NULL},
        {"quiet", QD_OPT_FLAG, &quiet, NULL, "no info lines (warnings and errors only)", NULL, NULL},
    };
    const char *pos_names[] = {NULL};
    const char *pos[1] = {NULL};
    qd_cmd_spec spec = {"export",
                        "--input FAKE_DIR --output OUT --format gptq|gptq_v2|awq|compressed-tensors "
                        "[--max-shard-size 5GB] [--overwrite] [--lm-head] [--verify]",
                        "write a quantization run as a GPTQ, AWQ or compressed-tensors checkpoint", opts,
                        (int)(sizeof opts / sizeof opts[0]), pos_names, pos, 0};
    int help = 0;
    QD_CHECK(qd_args_parse(&spec, argc, argv, &help));
    if (help) return QD_OK;
    if (quiet) qd_log_set_level(QD_LOG_WARN);
    if (!input) return qd_fail(QD_ERR_USAGE, "export: --input FAKE_DIR is required");
    if (!output) return qd_fail(QD_ERR_USAGE, "export: --output OUT is required");
    if (!format) return qd_fail(QD_ERR_USAGE, "export: --format is required (gptq, gptq_v2, awq, compressed-tensors)");
    /* the replacement of OUT removes files: it must not reach into the run it reads */
    QD_CHECK(qd_paths_disjoint("--output", output, "--input", input));
    qd_export_opts o = {.out_dir = output, .max_shard_bytes = max_shard, .overwrite = overwrite, .lm_head = lm_head,
                        .verify = verify};
    QD_CHECK(qd_export_format_parse(format, &o.format));
    o.ct_naive = strcmp(ct_format, "naive-quantized") == 0;
    if (o.ct_naive && o.format != QD_EXPORT_CT)
        return qd_fail(QD_ERR_USAGE, "export: --ct-format applies to --format compressed-tensors only");
    /* the fake directory's tensors against its config.json, before anything is written */
    qd_model_cfg cfg;
    QD_CHECK(qd_model_cfg_load(input, &cfg));
    qd_checkpoint *ck;
    QD_CHECK(qd_ckpt_open(input, 0, &ck));
    qd_status cst = qd_model_check_ckpt(&cfg, ck, 0);
    qd_ckpt_close(ck);
    QD_CHECK(cst);
    qd_qsource src;
    QD_CHECK(qd_qsource_open_fake(input, &src));
    qd_status st = qd_export_run(&o, &src);
    qd_qsource_close(&src);
    return st;
}
