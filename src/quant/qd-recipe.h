/* SPDX-License-Identifier: MIT
 * qd-recipe.h - quantization recipes (configs/NAME.json): run-wide settings plus per-module overrides.
 * The schema is in docs/numerics.md; unknown keys and wrong types are refused naming the key and file.
 *
 * Precedence: built-in defaults < recipe top level < command-line flags (applied by the caller to the
 * base spec after qd_recipe_apply_base) < the recipe's "overrides" whose POSIX extended regex "match"
 * finds the module prefix ("model.layers.3.mlp.down_proj"), applied in file order.
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

qd_status qd_recipe_load(const char *path, qd_recipe **out);
void qd_recipe_free(qd_recipe *r);
const char *qd_recipe_path(const qd_recipe *r);
/* Top-level values into *base and *run (only the keys present). */
void qd_recipe_apply_base(const qd_recipe *r, qd_qspec *base, qd_recipe_run *run);
/* The spec of one module: base, then every matching override in order. */
void qd_recipe_resolve(const qd_recipe *r, const qd_qspec *base, const char *module, qd_qspec *out);
/* Which overrides matched `module` and the fields each set, for error messages:
 * `overrides[2] "match": "mlp\.down_proj$" sets bits; ...` into buf (empty when none); returns the length. */
size_t qd_recipe_describe(const qd_recipe *r, const char *module, char *buf, size_t n);

#endif
