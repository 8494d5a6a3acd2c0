/* SPDX-License-Identifier: MIT
 * h5stage-check.c - the invariants of a staged module, tensor and block, checked before a block is
 * written and after it is read (so a bad block is refused, never staged, and never exported). */
#include <stdint.h>
#include <string.h>

#include "h5stage-internal.h"
#include "qd-log.h"

static qd_status check_name(const char *where, const char *what, const char *name) {
    size_t n = strnlen(name, QD_STAGE_NAME_MAX);
    if (n == 0 || n == QD_STAGE_NAME_MAX)
        return qd_fail(QD_ERR_FORMAT, "%s: %s name is empty or longer than %d bytes", where, what, QD_STAGE_NAME_MAX - 1);
    if (strchr(name, '/') || strcmp(name, ".") == 0)
        return qd_fail(QD_ERR_FORMAT, "%s: %s name '%s' contains '/' or is '.'", where, what, name);
    return QD_OK;
}

/* Every byte of p OR'ed together, eight at a time: a code is out of range iff this has a bit at or
 * above `bits`. Runs at memory speed (a GB of codes per block of a large MoE model, on every staging
 * write and read); the byte loop it replaces ran at a fraction of a GB/s. */
static uint8_t or_bytes(const uint8_t *p, size_t n) {
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof w);
        acc |= w;
    }
    for (; i < n; i++) acc |= p[i];
    uint8_t all = 0;
    for (int k = 0; k < 8; k++) all |= (uint8_t)(acc >> (8 * k));
    return all;
}

qd_status qd__stage_check_module(const char *where, const qd_staged_module *sm, int with_codes) {
    const qd_qlinear *m = &sm->q;
    qd_status st = check_name(where, "module", m->name);
    if (st != QD_OK) return st;
    const char *n = m->name;
    if (m->N < 1 || m->K < 1 || m->G < 1 || m->G > m->K)
        return qd_fail(QD_ERR_FORMAT, "%s: module '%s': N=%lld K=%lld G=%lld, expected N,K >= 1 and 1 <= G <= K",
                       where, n, (long long)m->N, (long long)m->K, (long long)m->G);
    if ((uint64_t)m->N > (SIZE_MAX / 4) / (uint64_t)m->K)
        return qd_fail(QD_ERR_FORMAT, "%s: module '%s': N*K = %lld*%lld is too large", where, n, (long long)m->N,
                       (long long)m->K);
    if (m->bits < 1 || m->bits > 8)
        return qd_fail(QD_ERR_FORMAT, "%s: module '%s': bits %d, expected 1..8", where, n, m->bits);
    if (m->group_size != -1 && m->group_size < 1)
        return qd_fail(QD_ERR_FORMAT, "%s: module '%s': group_size %d, expected -1 or >= 1", where, n, m->group_size);
    if (m->sym != 0 && m->sym != 1)
        return qd_fail(QD_ERR_FORMAT, "%s: module '%s': sym %d, expected 0 or 1", where, n, m->sym);
    if ((with_codes && !m->codes) || !m->scales || !m->zeros || !m->g_idx)
        return qd_fail(QD_ERR_INTERNAL, "%s: module '%s': codes/scales/zeros/g_idx missing", where, n);
    if (strnlen(sm->s.fallback, sizeof sm->s.fallback) == sizeof sm->s.fallback)
        return qd_fail(QD_ERR_FORMAT, "%s: module '%s': fallback is not NUL-terminated", where, n);
    size_t nk = (size_t)m->N * (size_t)m->K;
    unsigned lim = 1u << m->bits;
    uint8_t high = m->codes ? (uint8_t)(or_bytes(m->codes, nk) >> m->bits) : 0; /* the slow pass finds the culprit */
    for (size_t i = 0; high && i < nk; i++)
        if (m->codes[i] >= lim)
            return qd_fail(QD_ERR_FORMAT, "%s: /modules/%s/codes[%zu,%zu] = %u, expected < 2^%d", where, n,
                           i / (size_t)m->K, i % (size_t)m->K, m->codes[i], m->bits);
    for (int k = 0; k < m->K; k++)
        if (m->g_idx[k] < 0 || m->g_idx[k] >= m->G)
            return qd_fail(QD_ERR_FORMAT, "%s: /modules/%s/g_idx[%lld] = %d, expected 0 <= g_idx < G = %lld", where, n,
                           (long long)k, m->g_idx[k], (long long)m->G);
    return QD_OK;
}

qd_status qd__stage_check_tensor(const char *where, const qd_staged_tensor *t) {
    qd_status st = check_name(where, "tensor", t->name);
    if (st != QD_OK) return st;
    if (t->ndim < 1 || t->ndim > QD_STAGE_MAX_DIMS)
        return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': ndim %d, expected 1..%d", where, t->name, t->ndim,
                       QD_STAGE_MAX_DIMS);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 1 || (uint64_t)t->shape[d] > (SIZE_MAX / 4) / numel)
            return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s': dimension %d is %lld, expected >= 1 (and a sane size)",
                           where, t->name, d, (long long)t->shape[d]);
        numel *= (uint64_t)t->shape[d];
    }
    if (!t->data) return qd_fail(QD_ERR_INTERNAL, "%s: tensor '%s': no data", where, t->name);
    return QD_OK;
}

qd_status qd__stage_check_block(const char *where, const qd_staged_block *b, int with_codes) {
    if (b->block < 0) return qd_fail(QD_ERR_INTERNAL, "%s: negative block index %lld", where, (long long)b->block);
    if ((b->nmodules && !b->modules) || (b->ntensors && !b->tensors))
        return qd_fail(QD_ERR_INTERNAL, "%s: module or tensor array missing", where);
    for (size_t i = 0; i < b->nmodules; i++) {
        qd_status st = qd__stage_check_module(where, &b->modules[i], with_codes);
        if (st != QD_OK) return st;
        for (size_t j = 0; j < i; j++)
            if (strcmp(b->modules[i].q.name, b->modules[j].q.name) == 0)
                return qd_fail(QD_ERR_FORMAT, "%s: module '%s' appears twice", where, b->modules[i].q.name);
    }
    for (size_t i = 0; i < b->ntensors; i++) {
        qd_status st = qd__stage_check_tensor(where, &b->tensors[i]);
        if (st != QD_OK) return st;
        for (size_t j = 0; j < i; j++)
            if (strcmp(b->tensors[i].name, b->tensors[j].name) == 0)
                return qd_fail(QD_ERR_FORMAT, "%s: tensor '%s' appears twice", where, b->tensors[i].name);
    }
    return QD_OK;
}
