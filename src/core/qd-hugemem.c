/* SPDX-License-Identifier: MIT
 * qd-hugemem.c - large host arrays on transparent huge pages (qd-hugemem.h). */
#include "qd-hugemem.h"

#include <stdlib.h>
#include <sys/mman.h>

#define QD_HUGE_ALIGN ((size_t)2 << 20)

void *qd_hugemem_alloc(size_t bytes, size_t huge_from) {
    if (!bytes) bytes = 1;
    int huge = bytes >= huge_from;
    size_t align = huge ? QD_HUGE_ALIGN : 64;
    if (bytes > (size_t)-1 - align) return NULL;
    bytes = (bytes + align - 1) / align * align; /* aligned_alloc wants a multiple of the alignment */
    void *p = aligned_alloc(align, bytes);
    if (p && huge) (void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without it the pages are 4 KB, nothing else changes */
    return p;
}
