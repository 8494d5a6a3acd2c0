/* SPDX-License-Identifier: MIT
 * qd-qbounds.h - the allowed range of every numeric quantization setting, as "MIN..MAX" text
 * (core/qd-range.h). The command-line tables and the recipe reader both check against these, so a
 * value refused on the command line is refused in a recipe too. */
#ifndef QD_QBOUNDS_H
#define QD_QBOUNDS_H

#define QD_RANGE_BITS "2..8"                /* and one of 2, 3, 4, 8 */
#define QD_RANGE_GROUP_SIZE "-1..1048576"   /* and not 0 */
#define QD_RANGE_DAMP "0..0.999"            /* GPTQ's retries raise it towards 1 */
#define QD_RANGE_NSAMPLES "1..1000000"
#define QD_RANGE_SEQLEN "2..1048576"
#define QD_RANGE_SEED "0..2147483647"   /* quantize, tokenize --calib (its preview) and recipes alike */

#endif
