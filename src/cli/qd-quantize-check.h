/* SPDX-License-Identifier: MIT
 * qd-quantize-check.h - the quantize command's set-up check, run before calibration, staging or any
 * block: every Linear of every layer gets its spec resolved (base settings, then the recipe's
 * overrides), and each spec must suit the method (bits, a group size dividing the input features)
 * and the output format (qd_export_check_module_scheme; awq: one group size per checkpoint).
 * A refusal is one line naming the module, the recipe override(s) that set its fields, and what the
 * format or method accepts. format "fake" checks the method's rules only.
 */
#ifndef QD_QUANTIZE_CHECK_H
#define QD_QUANTIZE_CHECK_H

#include "qd-model.h"
#include "qd-quant.h"
#include "qd-recipe.h"
#include "qd-status.h"

qd_status qd_quantize_check_specs(const qd_model_cfg *cfg, const qd_qspec *base, const qd_recipe *recipe,
                                  const char *format);

#endif
