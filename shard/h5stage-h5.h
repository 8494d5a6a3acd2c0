/* SPDX-License-Identifier: MIT
 * h5stage-h5.h - HDF5 calls with qdist's error reporting, for h5stage-block-*.c only.
 *
 * A qd__h5s ("scope") remembers the file it works on and every HDF5 id opened through it, and
 * closes them all (newest first) in qd__h5s_close, so a function can return on any failure without
 * leaking ids. A failed call is reported once as "<file>: <what>: <HDF5's own message>" and becomes
 * QD_ERR_HDF5 (writing) or QD_ERR_FORMAT (reading: a file that HDF5 cannot read is malformed).
 * qd__h5_quiet turns off HDF5's automatic error stack printing so only that one line is printed.
 */
#ifndef QD_H5STAGE_H5_H
#define QD_H5STAGE_H5_H

#include <hdf5.h>

#include "qd-status.h"

#define QD__H5S_MAX 32

typedef struct qd__h5s {
    const char *path;    /* named in every message */
    qd_status fail;      /* status a failed HDF5 call turns into */
    int n;
    hid_t ids[QD__H5S_MAX];
} qd__h5s;

void qd__h5_quiet(void);
/* id from an H5*create / H5*open call: kept in the scope, or reported (what names the object). */
qd_status qd__h5s_keep(qd__h5s *s, hid_t id, const char *what, hid_t *out);
/* herr_t from any other call: reported when negative. */
qd_status qd__h5s_ok(qd__h5s *s, herr_t rc, const char *what);
/* Close id early (it must be the newest kept id); reports a failed close. */
qd_status qd__h5s_pop(qd__h5s *s, hid_t id);
/* Close everything kept, newest first. Pass the status so far: returned as is when it is already a
 * failure (nothing more is printed), else the first close failure (reported) or QD_OK. */
qd_status qd__h5s_close(qd__h5s *s, qd_status st);

/* QD_H5_CHECK(scope, herr_t call, what): QD_FOREIGN_CHECK's role for HDF5, naming the file. */
#define QD_H5_CHECK(s, call, what) QD_CHECK(qd__h5s_ok((s), (call), (what)))
/* QD_H5_KEEP(scope, hid_t call, what, &id) */
#define QD_H5_KEEP(s, call, what, out) QD_CHECK(qd__h5s_keep((s), (call), (what), (out)))

#endif
