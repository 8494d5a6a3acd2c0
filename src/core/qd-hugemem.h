/* SPDX-License-Identifier: MIT
 * qd-hugemem.h - host allocations of large arrays that are written once right after they are made
 * (a block's weights on the CPU backend, a quantized Linear's codes): from huge_from bytes up they are
 * 2 MiB aligned and put on transparent huge pages where the kernel offers them, so their first touch
 * faults once per 2 MiB instead of once per 4 KiB. Freed with free(). Contents are not initialized.
 */
#ifndef QD_HUGEMEM_H
#define QD_HUGEMEM_H

#include <stddef.h>

/* bytes (at least 1) 64-byte aligned, or on huge pages when bytes >= huge_from; NULL when out of memory */
void *qd_hugemem_alloc(size_t bytes, size_t huge_from);

#endif
