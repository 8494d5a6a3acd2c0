/* SPDX-License-Identifier: MIT
 * export-verify.c - read an export back with the dequantise-on-load reader and compare it with the
 * quantization source, bit for bit (contract in qd-export.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd-check.h"
#include "qd-export.h"
#include "qd-log.h"
#include "qd-qformat-read.h"
#include "qd-safetensors.h"

static qd_dtype dtype_of_scales(const qd_checkpoint *ck, const char *prefix) {
    static const char *names[] = {".scales", ".weight_scale"};
    char buf[QD_QNAME_MAX + 32];
    for (int i = 0; i < 2; i++) {
        snprintf(buf, sizeof buf, "%s%s", prefix, names[i]);
        const qd_st_tensor *t = qd_ckpt_find(ck, buf);
        if (t) return t->dtype;
    }
    return QD_DT_COUNT;
}

static float round_to(qd_dtype dt, float x) {
    unsigned char buf[8];
    float y;
    qd_from_f32(dt, &x, buf, 1);
    qd_to_f32(dt, buf, &y, 1);
    return y;
}

static qd_status verify_layer(const qd_qformat *qf, const qd_checkpoint *ck, qd_qlinear *l) {
    float *got = NULL;
    int64_t N, K;
    QD_CHECK(qd_qformat_read_linear(qf, ck, l->name, &got, &N, &K, NULL));
    if (N != l->N || K != l->K) {
        free(got);
        return qd_fail(QD_ERR_MISMATCH, "export verify: %s reads back as [%lld,%lld], expected [%d,%d]", l->name,
                       (long long)N, (long long)K, l->N, l->K);
    }
    qd_dtype sdt = dtype_of_scales(ck, l->name);
    char wname[QD_QNAME_MAX + 16];
    snprintf(wname, sizeof wname, "%s.weight", l->name);
    const qd_st_tensor *plain = qd_ckpt_find(ck, wname);
    int unquantized = sdt == QD_DT_COUNT && plain && qd_dtype_is_float(plain->dtype);
    /* inf == inf and NaN patterns compare equal bit for bit: a scale that does not fit is no match */
    qd_status st = qd_qlinear_check_scales(l, unquantized ? QD_DT_F32 : sdt, "the exported checkpoint");
    if (st != QD_OK) {
        free(got);
        return st;
    }
    double maxdiff = 0;
    size_t bad = 0;
    for (int n = 0; n < l->N; n++)
        for (int k = 0; k < l->K; k++) {
            size_t gi = (size_t)l->g_idx[k] * l->N + n;
            float s = unquantized || qd_scheme_is_fp4(l->scheme) ? l->scales[gi] : round_to(sdt, l->scales[gi]);
            float want = qd_qlinear_code_value(l, (size_t)n * l->K + k, gi) * s;
            if (unquantized) want = round_to(plain->dtype, want);
            float g = got[(size_t)n * l->K + k];
            if (memcmp(&g, &want, sizeof g) != 0 || !isfinite(g)) {
                bad++;
                double d = fabs((double)g - want);
                maxdiff = d > maxdiff ? d : maxdiff;
            }
        }
    free(got);
    if (bad)
        return qd_fail(QD_ERR_MISMATCH, "export verify: %s: %zu of %lld weights read back differ (largest %.3g)",
                       l->name, bad, (long long)l->N * (long long)l->K, maxdiff);
    return QD_OK;
}

qd_status qd_export_verify(const char *dir, const qd_qsource *src) {
    qd_checkpoint *ck;
    QD_CHECK(qd_ckpt_open(dir, 1, &ck));
    qd_qformat *qf;
    qd_status st = qd_qformat_open(dir, &qf);
    if (st != QD_OK) {
        qd_ckpt_close(ck);
        return st;
    }
    qd_qrun run;
    src->iface->run(src->ctx, &run);
    size_t cursor = 0, n = 0;
    for (;;) {
        qd_qlinear l;
        int done;
        st = qd_qsource_next(src, &cursor, 1, &l, &done);
        if (st != QD_OK || done) break;
        if (run.scales_rounded) qd_qlinear_round_scales(&l, run.scale_dtype);
        st = verify_layer(qf, ck, &l);
        qd_qlinear_free(&l);
        if (st != QD_OK) break;
        n++;
    }
    if (st == QD_OK) qd_info("export verify: %zu Linear modules of %s read back bit-exact (%s)", n, dir,
                             qd_qformat_name(qf));
    qd_qformat_close(qf);
    qd_ckpt_close(ck);
    return st;
}
