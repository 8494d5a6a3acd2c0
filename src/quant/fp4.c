/* SPDX-License-Identifier: MIT
 * fp4.c - the group scales of nvfp4a16 and mxfp4 (qd-scheme.h); round-to-nearest into E2M1 with them
 * is float-rtn.c's, GPTQ's sweep with them gptq.c's. The scale rules are compressed-tensors' observers':
 *   nvfp4a16: global = 448 * 6 / amax(W) (fp32; 1 for an all-zero weight, as its generate_gparam's
 *             nan_to_num), local = e4m3(global * amax(group) / 6) (0 -> 0.125, its eps), effective
 *             scale e4m3(local) / global;
 *   mxfp4:    2^(e8m0 - 127) with the e8m0 of qd_mx_scale_e8m0(amax(group)).
 */
#include <math.h>

#include "qd-fp4.h"
#include "qd-fp8.h"
#include "qd-log.h"
#include "qd-quant.h"
#include "qd-rows.h"

/* below this amax the global scale would push local / global into fp32's subnormals, where the
 * export could no longer recover the E4M3 local scale exactly: such a weight is treated as zero */
#define NVFP4_TINY_AMAX 0x1p-60f

float qd_fp4_global_of_amax(float amax) {
    float global = amax >= NVFP4_TINY_AMAX ? QD_E4M3_MAX * QD_E2M1_MAX / amax : 1.0f;
    return isfinite(global) ? global : 1.0f;
}

typedef struct {
    const float *W;
    size_t K, N, gs, G;
    qd_scheme sc;
    float global, *scales;
} fp4_job;

/* the group scales of rows [r0, r1): each group's own, so any split of the rows gives the same bits */
static void fp4_rows(void *arg, int part, size_t r0, size_t r1) {
    (void)part;
    const fp4_job *j = arg;
    for (size_t n = r0; n < r1; n++)
        for (size_t g = 0; g < j->G; g++) {
            float gmax = qd_absmax(j->W + n * j->K + g * j->gs, j->gs), s;
            if (qd_scheme_is_nvfp4(j->sc)) {
                uint8_t b = qd_f32_to_e4m3(j->global * (gmax / QD_E2M1_MAX));
                if ((b & 0x7f) == 0) b = qd_f32_to_e4m3(0.125f);
                s = qd_e4m3_to_f32(b) / j->global;
            } else s = qd_e8m0_to_f32(qd_mx_scale_e8m0(gmax));
            j->scales[g * j->N + n] = s;
        }
}

float qd_fp4_scales(const float *W, size_t N, size_t K, qd_scheme sc, float global, float *scales) {
    size_t gs = (size_t)qd_scheme_fp4_group(sc), G = K / gs;
    if (!qd_scheme_is_nvfp4(sc)) {
        global = 0;
    } else if (!(global > 0)) { /* a run sets it (fp4-fuse.c); a Linear quantized alone has W's own */
        global = qd_fp4_global_of_amax(qd_absmax(W, N * K));
    }
    fp4_job j = {.W = W, .K = K, .N = N, .gs = gs, .G = G, .sc = sc, .global = global, .scales = scales};
    qd_rows_run(N, K, fp4_rows, &j);
    return global;
}

qd_status qd_fp4_check_shape(qd_scheme sc, const char *name, size_t K) {
    size_t gs = (size_t)qd_scheme_fp4_group(sc);
    if (gs && K % gs)
        return qd_fail(QD_ERR_UNSUPPORTED, "%s: scheme %s quantizes groups of %zu input features, which do not divide "
                       "its %zu (leave the module unquantized with a recipe \"skip\" or give it another scheme)", name,
                       qd_scheme_name(sc), gs, K);
    return QD_OK;
}
