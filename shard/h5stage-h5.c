/* SPDX-License-Identifier: MIT
 * h5stage-h5.c - HDF5 ids kept in a scope and HDF5 failures turned into one qdist line. */
#include <stdio.h>
#include <string.h>

#include "h5stage-h5.h"
#include "qd-log.h"

void qd__h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

struct h5_msgs {
    char outer[256];
    char inner[256];
};

static herr_t walk_cb(unsigned n, const H5E_error2_t *err, void *data) {
    struct h5_msgs *m = data;
    const char *d = err->desc ? err->desc : "";
    if (n == 0) snprintf(m->outer, sizeof m->outer, "%s", d);
    snprintf(m->inner, sizeof m->inner, "%s", d);
    return 0;
}

/* HDF5's message for the failure on the current stack: "outermost (innermost)", then cleared */
static void h5_message(char *out, size_t cap) {
    struct h5_msgs m = {{0}, {0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &m);
    H5Eclear2(H5E_DEFAULT);
    if (!m.outer[0]) snprintf(out, cap, "HDF5 call failed");
    else if (!m.inner[0] || strcmp(m.outer, m.inner) == 0) snprintf(out, cap, "%s", m.outer);
    else snprintf(out, cap, "%s (%s)", m.outer, m.inner);
}

static qd_status report(qd__h5s *s, const char *what) {
    char msg[600];
    h5_message(msg, sizeof msg);
    return qd_fail(s->fail, "%s: %s: %s", s->path, what, msg);
}

qd_status qd__h5s_keep(qd__h5s *s, hid_t id, const char *what, hid_t *out) {
    *out = H5I_INVALID_HID;
    if (id < 0) return report(s, what);
    if (s->n == QD__H5S_MAX) {
        H5Idec_ref(id);
        return qd_fail(QD_ERR_INTERNAL, "%s: %s: more than %d HDF5 ids open at once", s->path, what, QD__H5S_MAX);
    }
    s->ids[s->n++] = id;
    *out = id;
    return QD_OK;
}

qd_status qd__h5s_ok(qd__h5s *s, herr_t rc, const char *what) { return rc < 0 ? report(s, what) : QD_OK; }

static herr_t close_id(hid_t id) {
    switch (H5Iget_type(id)) {
    case H5I_FILE: return H5Fclose(id);
    case H5I_GROUP: return H5Gclose(id);
    case H5I_DATASET: return H5Dclose(id);
    case H5I_DATASPACE: return H5Sclose(id);
    case H5I_DATATYPE: return H5Tclose(id);
    case H5I_ATTR: return H5Aclose(id);
    case H5I_GENPROP_LST: return H5Pclose(id);
    default: return H5Idec_ref(id) < 0 ? -1 : 0;
    }
}

qd_status qd__h5s_pop(qd__h5s *s, hid_t id) {
    if (s->n == 0 || s->ids[s->n - 1] != id)
        return qd_fail(QD_ERR_INTERNAL, "%s: HDF5 id closed out of order", s->path);
    s->n--;
    return close_id(id) < 0 ? report(s, "closing an HDF5 object") : QD_OK;
}

qd_status qd__h5s_close(qd__h5s *s, qd_status st) {
    int failed = st != QD_OK;
    while (s->n > 0) {
        hid_t id = s->ids[--s->n];
        if (close_id(id) < 0 && !failed) {
            st = report(s, "closing an HDF5 object (flushing to disk)");
            failed = 1;
        }
    }
    H5Eclear2(H5E_DEFAULT);
    return st;
}
