/* SPDX-License-Identifier: MIT
 * outdir.c - an output directory that appears only when complete.
 *
 * Everything is written into DIR.qdist-tmp-<pid> beside DIR (same file system, so the final rename
 * is atomic); commit renames it into place. With overwrite, an existing DIR is first moved aside to
 * DIR.qdist-old-<pid> and removed only after the new one is in place.
 */
#include "qd-st-writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qd-check.h"
#include "qd-fs.h"
#include "qd-log.h"

struct qd_outdir {
    char final[4096];
    char tmp[4200];
    char parent[4096];
};

qd_status qd_outdir_begin(const char *final_dir, int overwrite, qd_outdir **out) {
    *out = NULL;
    size_t n = final_dir ? strlen(final_dir) : 0;
    while (n > 1 && final_dir[n - 1] == '/') n--; /* "out/" and "out" are the same directory */
    if (n == 0 || n + 32 >= sizeof ((qd_outdir *)0)->final)
        return qd_fail(QD_ERR_USAGE, "output directory: bad path '%s'", final_dir ? final_dir : "");
    qd_outdir *o;
    QD_ALLOC(o, 1);
    memcpy(o->final, final_dir, n);
    o->final[n] = '\0';
    if (qd_path_exists(o->final)) {
        if (!qd_is_dir(o->final)) {
            qd_status st = qd_fail(QD_ERR_USAGE, "%s: output path exists and is not a directory", o->final);
            free(o);
            return st;
        }
        if (!qd_dir_is_empty(o->final) && !overwrite) {
            qd_status st = qd_fail(QD_ERR_USAGE, "%s: output directory exists and is not empty (pass --overwrite to "
                                   "replace it)", o->final);
            free(o);
            return st;
        }
    }
    snprintf(o->tmp, sizeof o->tmp, "%s.qdist-tmp-%d", o->final, (int)getpid());
    snprintf(o->parent, sizeof o->parent, "%s", o->final);
    char *slash = strrchr(o->parent, '/');
    if (!slash) snprintf(o->parent, sizeof o->parent, ".");
    else if (slash == o->parent) slash[1] = '\0';
    else *slash = '\0';
    qd_status st = qd_rm_rf(o->tmp); /* a leftover of an earlier run with the same pid */
    if (st == QD_OK) st = qd_mkdir_p(o->tmp);
    if (st != QD_OK) {
        free(o);
        return st;
    }
    *out = o;
    return QD_OK;
}

const char *qd_outdir_path(const qd_outdir *o) { return o->tmp; }

qd_status qd_outdir_commit(qd_outdir *o) {
    qd_status st = qd_fsync_dir(o->tmp);
    char old[4200] = "";
    if (st == QD_OK && qd_path_exists(o->final)) {
        if (qd_dir_is_empty(o->final)) {
            if (rmdir(o->final) != 0)
                st = qd_fail(QD_ERR_IO, "%s: cannot replace the empty directory: %s", o->final, strerror(errno));
        } else {
            snprintf(old, sizeof old, "%s.qdist-old-%d", o->final, (int)getpid());
            if (rename(o->final, old) != 0)
                st = qd_fail(QD_ERR_IO, "%s: cannot move the old output aside: %s", o->final, strerror(errno));
        }
    }
    if (st == QD_OK && rename(o->tmp, o->final) != 0) {
        st = qd_fail(QD_ERR_IO, "%s: rename of %s into place failed: %s", o->final, o->tmp, strerror(errno));
        if (old[0]) rename(old, o->final); /* put the old output back */
    }
    if (st == QD_OK) st = qd_fsync_dir(o->parent);
    if (st == QD_OK && old[0]) st = qd_rm_rf(old);
    if (st != QD_OK) qd_rm_rf(o->tmp);
    free(o);
    return st;
}

void qd_outdir_abort(qd_outdir *o) {
    if (!o) return;
    qd_rm_rf(o->tmp);
    free(o);
}
