/* SPDX-License-Identifier: MIT
 * run-export.c - the checkpoint export from the staging, on rank 0, in the format asked for (the
 * fake-quant format included: shard/export-fake.c).
 */
#include "run-internal.h"

#include <stdio.h>
#include <string.h>

#include "qd-check.h"
#include "qd-export.h"
#include "qd-fs.h"
#include "qd-qsource-stage.h"

qd_status qd_run_prepare_meta(const char *model_dir, const char *meta) {
    QD_CHECK(qd_mkdir_p(meta));
    return qd_model_copy_meta_files(model_dir, meta);
}

void qd_run_qrun(const qd_run_opts *o, const qd_model_cfg *cfg, qd_qrun *run) {
    *run = (qd_qrun){.act_order = o->q.base.act_order, .static_groups = o->q.base.static_groups,
                     .true_sequential = o->q.true_sequential,
                     .damp = o->q.base.method == QD_METHOD_GPTQ ? o->q.base.damp : -1,
                     .scales_rounded = 1, .scale_dtype = o->q.scale_dtype};
    snprintf(run->method, sizeof run->method, "%s", qd_method_name(o->q.base.method));
    memcpy(run->fp8_block, cfg->fp8_block, sizeof run->fp8_block);
    qd_run_qrun_kv(o, cfg, run);
}

qd_status qd_run_export(const qd_run_opts *o, const qd_model *m, const char *staging, const char *meta) {
    qd_export_opts eo = {.out_dir = o->output_dir, .overwrite = o->overwrite, .max_shard_bytes = o->max_shard_bytes};
    QD_CHECK(qd_export_format_parse(o->format, &eo.format));
    qd_qrun run;
    qd_run_qrun(o, qd_model_cfg_of(m), &run);
    qd_qsource src;
    QD_CHECK(qd_qsource_open_stage(staging, qd_model_ckpt(m), qd_model_cfg_of(m)->nlayers, meta, &run, &src));
    qd_status st = eo.format == QD_EXPORT_FAKE ? qd_export_fake(&eo, &src, qd_model_ckpt(m)) : qd_export_run(&eo, &src);
    qd_qsource_close(&src);
    return st;
}
