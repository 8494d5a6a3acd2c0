/* SPDX-License-Identifier: MIT
 * qd-qlayer.h - the result of quantizing one Linear: the Linear (src/core/qd-qlinear.h, q.name the
 * module prefix, q.method "rtn" / "gptq" / "awq") plus how it was obtained (loss, damping, fallback).
 *
 * dev_codes: on a backend with the u8_codes op, qd_qresult_fetch leaves q.codes' bytes (packed four
 * to a word) in this device buffer too, so that the install dequantizes from them instead of
 * uploading what was just downloaded; the install frees it. NULL otherwise (a host backend, a result
 * read from the staging or gathered from other ranks). Moving the struct moves it.
 */
#ifndef QD_QLAYER_H
#define QD_QLAYER_H

#include <stddef.h>

#include "qd-qlinear.h"

struct qd_buf; /* qd-backend.h's qd_buf_t */

typedef struct qd_qresult {
    qd_qlinear q; /* q.name is the module prefix, q.method "rtn" / "gptq" / "awq" */
    qd_qstats s;
    struct qd_buf *dev_codes; /* [(N K + 3) / 4] words: q.codes on the device, or NULL */
} qd_qresult;

/* frees q's arrays and dev_codes (NULL-safe) */
void qd_qresult_free(qd_qresult *r);

#endif
