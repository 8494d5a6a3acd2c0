/* SPDX-License-Identifier: MIT
 * qdist eval - perplexity of a model (original or fake-quant output) on a text file, by the papers'
 * protocol (src/eval/qd-eval.h). Prints "ppl P tokens N ..." or, with --json, one JSON object. */
#include <stdio.h>
#include <cjson/cJSON.h>

#include "qd-args.h"
#include "qd-backends.h"
#include "qd-check.h"
#include "qd-cli-numerics.h"
#include "qd-commands.h"
#include "qd-eval.h"
#include "qd-log.h"

qd_status qd_cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *backend = "auto", *numerics = "fast";
    int seqlen = 0, max_windows = 0, json = 0, quiet = 0;
    const char *logits_dir = NULL;
    const qd_opt opts[] = {
        {"model", QD_OPT_STR, &model, "DIR", "model directory (original or quantized)", NULL, NULL},
        {"data", QD_OPT_STR, &data, "FILE", "UTF-8 text, e.g. wikitext-2-raw/wiki.test.raw", NULL, NULL},
        {"seqlen", QD_OPT_INT, &seqlen, "N", "window length (default min(2048, max_position_embeddings))", "2..1048576", NULL},
        {"max-windows", QD_OPT_INT, &max_windows, "N", "evaluate only the first N windows (0: all)", "0..100000000", NULL},
        {"dump-logits", QD_OPT_STR, &logits_dir, "DIR", "write the first window's logits and ids to DIR/logits.safetensors", NULL, NULL},
        {"backend", QD_OPT_STR, &backend, "NAME", "compute backend: cpu, cuda, cuda:N, auto (default: cuda when a GPU answers, else cpu)", NULL, NULL},
        {"device", QD_OPT_STR, &backend, "NAME", "the same as --backend", NULL, NULL},
        {"numerics", QD_OPT_CHOICE, &numerics, "MODE", QD_NUMERICS_HELP, "fast|exact", NULL},
        {"json", QD_OPT_FLAG, &json, NULL, "print one JSON object", NULL, NULL},
        {"quiet", QD_OPT_FLAG, &quiet, NULL, "no info lines on stderr (the result is still printed)", NULL, NULL},
    };
    const char *pos_names[] = {NULL};
    const char *pos[1] = {NULL};
    qd_cmd_spec spec = {"eval", "--model DIR --data FILE [--seqlen N] [--max-windows N] [--json]",
                        "perplexity of a model (original or quantized) on a text file", opts,
                        (int)(sizeof opts / sizeof opts[0]), pos_names, pos, 0};
    int help = 0;
    QD_CHECK(qd_args_parse(&spec, argc, argv, &help));
    if (help) return QD_OK;
    if (quiet) qd_log_set_level(QD_LOG_WARN);
    if (!model) return qd_fail(QD_ERR_USAGE, "eval: --model DIR is required");
    if (!data) return qd_fail(QD_ERR_USAGE, "eval: --data FILE is required");
    qd_backend_spec bs;
    QD_CHECK(qd_backend_spec_parse(backend, numerics, &bs));
    qd_backend_t be;
    QD_CHECK(qd_backend_open(&bs, &be));
    struct qd_eval_opts eo = {.seqlen = (size_t)seqlen, .max_windows = (size_t)max_windows, .logits_dir = logits_dir};
    struct qd_eval_result r;
    qd_status st = qd_eval_ppl_file(be, model, data, &eo, &r);
    const char *bname = qd_be_name(be);
    if (st == QD_OK && json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "ppl", r.ppl);
        cJSON_AddNumberToObject(o, "mean_nll", r.mean_nll);
        cJSON_AddNumberToObject(o, "tokens", (double)r.scored_tokens);
        cJSON_AddNumberToObject(o, "text_tokens", (double)r.text_tokens);
        cJSON_AddNumberToObject(o, "windows", (double)r.windows);
        cJSON_AddNumberToObject(o, "seqlen", (double)r.seqlen);
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddStringToObject(o, "data", data);
        cJSON_AddStringToObject(o, "backend", bname);
        cJSON_AddNumberToObject(o, "seconds", r.seconds);
        char *s = cJSON_PrintUnformatted(o);
        if (s) printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
        if (!s) st = qd_fail(QD_ERR_NOMEM, "eval: out of memory printing JSON");
    } else if (st == QD_OK) {
        printf("ppl %.4f  tokens %zu  (%zu windows x %zu, text %zu tokens, %.1f s, %s backend)\n", r.ppl,
               r.scored_tokens, r.windows, r.seqlen, r.text_tokens, r.seconds, bname);
    }
    qd_be_free(be);
    return st;
}
