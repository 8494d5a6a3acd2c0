/* SPDX-License-Identifier: MIT
 * qd-recipe.h - quantization recipes (configs/NAME.json): run-wide settings plus per-module overrides.
 * The schema is in docs/numerics.md; unknown keys and wrong types are refused naming the key and file.
 *
 * Precedence: built-in defaults < recipe top level < command-line flags (qd_recipe_apply_flags does
 * the first three) < the recipe's "overrides" whose POSIX extended regex "match" finds the module
 * prefix ("model.layers.3.mlp.down_proj"), applied in file order.
 * "scheme" (qd-scheme.h) fixes bits (8; 4 for fp4), sym and the group size where it is set (fp8 and fp4
 * also the method: rtn, unless the same object or the command line asks for gptq, which every fp8
 * and fp4 scheme takes), so that such an override inside a GPTQ run is quantized by
 * qd_float_rtn_layer; an object that sets a scheme together with a field it fixes, or --scheme with
 * such a flag, is a usage error.
 */
#ifndef QD_RECIPE_H
#define QD_RECIPE_H

#include <stddef.h>

#include "qd-quant.h"

typedef struct qd_recipe qd_recipe;

/* Settings a recipe may carry beyond the per-Linear spec; fields a recipe does not set keep the
 * caller's values. */
typedef struct qd_recipe_run {
    int true_sequential;
    int lm_head;
    int nsamples, seqlen;
    long long seed;
    char calib_mode[16]; /* "random" | "concat" */
} qd_recipe_run;

/* The command line's quantization flags: each value counts only when its seen_* is set. */
typedef struct qd_recipe_flags {
    const char *method;     /* "rtn" | "gptq" | "awq" */
    const char *calib_mode; /* "random" | "concat" */
    const char *scheme;     /* qd-scheme.h name */
    int bits, group_size, sym, asym, act_order, static_groups, mse, true_sequential, nsamples, seqlen, seed;
    double damp;
    int seen_scheme, seen_method, seen_calib_mode, seen_bits, seen_group_size, seen_sym, seen_asym, seen_act_order,
        seen_static_groups, seen_mse, seen_damp, seen_true_sequential, seen_nsamples, seen_seqlen, seen_seed;
} qd_recipe_flags;

qd_status qd_recipe_load(const char *path, qd_recipe **out);
/* defaults < the recipe at path (NULL: none) < flags, into the run-wide *base and *run (seqlen 0: the
 * caller's default); *recipe keeps the per-module overrides (NULL without a recipe; the caller frees
 * it). An AWQ run is asymmetric unless sym is set; its calibration mode defaults to concat, the
 * others' to random. A recipe's "lm_head": true is refused (qdist never quantizes lm_head). */
qd_status qd_recipe_apply_flags(const char *path, const qd_recipe_flags *f, qd_recipe **recipe, qd_qspec *base,
                                qd_recipe_run *run);
void qd_recipe_free(qd_recipe *r);
const char *qd_recipe_path(const qd_recipe *r);
/* Top-level values into *base and *run (only the keys present). */
void qd_recipe_apply_base(const qd_recipe *r, qd_qspec *base, qd_recipe_run *run);
/* The spec of one module: base, then every matching override in order. */
void qd_recipe_resolve(const qd_recipe *r, const qd_qspec *base, const char *module, qd_qspec *out);
/* Which overrides matched `module` and the fields each set, for error messages:
 * `overrides[2] "match": "mlp\.down_proj$" sets bits; ...` into buf (empty when none); returns the length. */
size_t qd_recipe_describe(const qd_recipe *r, const char *module, char *buf, size_t n);
/* The number of overrides (0 for NULL); qd_recipe_mark sets hit[i] for each override i whose "match"
 * finds module, and qd_recipe_warn_unmatched warns once per override no module set (a recipe written
 * for several models may hold such, as llm-compressor's targets; a typo shows there). */
int qd_recipe_noverrides(const qd_recipe *r);
void qd_recipe_mark(const qd_recipe *r, const char *module, unsigned char *hit);
void qd_recipe_warn_unmatched(const qd_recipe *r, const unsigned char *hit, const char *example);

#endif
