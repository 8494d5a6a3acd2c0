"""Independent Python (numpy) reference of RTN, GPTQ and AWQ for qdist's tests.

Written line by line from docs/reference/algorithms.md sections 1 (GPTQ) and 2 (AWQ), NOT from
qdist's C code. Layer convention: W is [N, K] (out, in); activations X are [T, K].

Precision: every computation runs in float64 by default (`dtype=np.float64`: Hessian, Cholesky,
column sweep, quantizer). qdist runs in float32; the float64 reference is the "exact" answer and the
tests measure qdist's distance from it. `dtype=np.float32` is accepted to study float32 effects.

Rounding: np.round (round half to even, like torch.round used by all three reference tools). An exact
.5 tie only happens on constructed data; the tests treat a code difference as a tie when the
reference's x/scale lies within TIE_EPS of a half-integer (see `tie_margin` in the results) and
exclude it from the mismatch count (and say so).

Where the reference tools differ, this file follows (and the switches name the others):
* GPTQ: IST-DASLab/gptq and GPTQModel (they agree on what is implemented here):
  - H = (2/T) X^T X with T = number of calibration TOKENS (the C entry point's definition). IST
    divides by the number of SEQUENCES instead (nsamples), which only scales the reported loss by
    seqlen; codes do not depend on it.
  - dead columns (diag(H) == 0): H[i,i] = 1, W[:, i] = 0, before act-order and before static groups.
  - gs = -1: one MinMax over the whole W before the loop (IST/GPTQModel call find_params at the top
    of fasterquant, i.e. on W BEFORE the dead columns are zeroed; docs/reference/algorithms.md's "(updated) W" is
    ambiguous). `perchannel_after_dead=True` takes it after the zeroing, qdist's documented choice;
    the two differ only when a column is dead.
  - non-static groups: params from the GLOBAL W[:, c:c+gs] at each group boundary c (holds the
    lazy updates of earlier 128-blocks, not the in-block ones).
  - static_groups: params per original-order group from W after dead zeroing, before the sweep;
    with act-order the group of sweep position c is perm[c] // gs; g_idx[k] = k // gs.
  - act-order: perm = argsort(diag(H), descending) (stable sort here; torch.argsort is not stable,
    so exactly equal diagonals may be ordered differently by other tools); g_idx = (i//gs)[invperm].
  - damping: percdamp * mean(diag(H)) added to the diagonal (after the permutation; the mean does
    not depend on it). On Cholesky failure, percdamp += 0.0015 while < 1 (GPTQModel's HF path);
    then an RTN fallback with Hinv = identity (llm-compressor), reported in the result.
  - sym MinMax: docs/reference/algorithms.md's xmin = -xmax. IST/GPTQModel only set xmin = -xmax where xmin < 0,
    so an all-non-negative row keeps xmin = 0 (scale = xmax/maxq, zero = (maxq+1)/2, which clips);
    `ist_sym_quirk=True` reproduces that. Affects only groups whose values are all >= 0.
  - loss = sum over weights of (w - q)^2 / d^2 / 2 (IST prints the plain sum).
  - true-sequential order within a block is implemented in qref_model.py (IST/GPTQModel order).
* AWQ: AutoAWQ (casper-hansen/AutoAWQ quantizer.py, duo scaling on):
  - the four Llama mappings; v -> o only when v.out_features == o.in_features (llm-compressor's
    test; AutoAWQ compares whole weight shapes, identical for Llama without GQA);
  - every mapping's scales searched against the unmodified block, then all applied (AutoAWQ);
    llm-compressor instead applies each before searching the next and also tries ratio 1.0;
  - grid ratios k/20, k = 0..19; s = clamp(x_mean^r / (w_mean^(1-r) + 1e-4), min 1e-4);
    s /= sqrt(max(s) * min(s)); non-finite -> 1; loss = mean squared error of the loss module;
  - w_mean with gs = -1 uses a whole row as the group;
  - clip search: skip q/k; tokens input[::max(1, T // 512)]; max_shrink 0.5, grid 20 (10 trials);
    err = mean over tokens of (sum_group Q(clamp(w)) x - sum_group w x)^2 per (row, group). The
    output-channel batching (256 / 64) only bounds memory and does not change the result; it is
    done here in batches of 256 rows whatever N is (AutoAWQ asserts N % 64 == 0);
  - pseudo-quant asym: s = clamp(max - min, 1e-5) / maxq, z = clamp(-round(min / s), 0, maxq),
    range NOT widened to include 0. NOTE: when the clip clamps both ends of a group (min = -m,
    max = m), -min/s = maxq/2 = 7.5 exactly in real arithmetic, and every clamped element sits at
    exactly +-7.5 code units, so z and those codes are decided by float rounding noise, and with
    them that candidate's error and possibly the clip choice. Such groups are marked as ties
    (tie_margin 0); the clip search is rerun with all ties resolved down / up / mixed, and
    (row, group)s whose choice changes (or whose best errors are within CLIP_NEAR) are ties too.
"""
from __future__ import annotations

import numpy as np

TIE_EPS = 1e-4   # |frac(x/scale) - 0.5| below this (in code units) counts as a rounding tie
CLIP_NEAR = 1e-3  # AWQ clip: candidates whose errors are this close (relative) are a decision tie


# ==============================================================================================
# MinMax quantizer (docs/reference/algorithms.md section 1, "Quantizer")

def store_scale(s, scale_dtype=None):
    """A scale as the checkpoint stores it (qdist rounds every scale so before choosing the zero and
    codes): scale_dtype "f16" / "bf16" rounds to nearest even at 11 / 8 significant bits (F16's
    subnormal step 2^-24, BF16's 2^-133; one that rounds to 0 becomes 2^-24 / 2^-126); None keeps s.
    Written from the IEEE rule with frexp, not from a library's conversion."""
    if scale_dtype is None:
        return s
    sig, tiny, floor0 = {"f16": (11, 2.0 ** -24, 2.0 ** -24), "bf16": (8, 2.0 ** -133, 2.0 ** -126)}[scale_dtype]
    a = np.asarray(s, dtype=np.float64)
    _, e = np.frexp(a)                                   # a = m 2^e, m in [0.5, 1)
    step = np.maximum(np.ldexp(1.0, e - sig), tiny)
    r = np.round(a / step) * step                        # np.round: half to even
    r = np.where(r == 0, floor0, r)
    return r.astype(np.asarray(s).dtype) if isinstance(s, np.ndarray) else r


def quantize_codes(x, scale, zero, maxq):
    """q = clamp(round(x/scale) + zero, 0, maxq); x: [N, m], scale/zero: [N] -> int codes"""
    q = np.round(x / scale[:, None]) + zero[:, None]
    return np.clip(q, 0, maxq)


def dequant(q, scale, zero):
    return scale[:, None] * (q - zero[:, None])


def minmax_params(x, bits, sym, mse=False, norm=2.4, grid=100, maxshrink=0.8, ist_sym_quirk=False,
                  scale_dtype=None):
    """Per-row scale/zero of x [N, m] (one group). Returns (scale [N], zero [N]) in x.dtype. Each
    scale (each MSE candidate too) is store_scale(., scale_dtype) before its zero and codes."""
    maxq = 2 ** bits - 1
    zero_v = np.zeros(x.shape[0], dtype=x.dtype)
    xmin = np.minimum(x.min(axis=1), zero_v)
    xmax = np.maximum(x.max(axis=1), zero_v)
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        if ist_sym_quirk:
            xmin = np.where(xmin < 0, -xmax, xmin)
        else:
            xmin = -xmax
    allz = (xmin == 0) & (xmax == 0)
    xmin = np.where(allz, -1.0, xmin).astype(x.dtype)
    xmax = np.where(allz, 1.0, xmax).astype(x.dtype)
    scale = store_scale((xmax - xmin) / maxq, scale_dtype)
    if sym:
        zero = np.full_like(scale, (maxq + 1) / 2)
    else:
        zero = np.minimum(np.round(-xmin / scale), maxq)   # a scale stored rounded down can give maxq + 1
    if mse:
        best = np.full(x.shape[0], np.inf)
        for i in range(int(maxshrink * grid)):
            p = 1 - i / grid
            xmin1 = p * xmin
            xmax1 = p * xmax
            scale1 = store_scale((xmax1 - xmin1) / maxq, scale_dtype)
            zero1 = np.minimum(np.round(-xmin1 / scale1), maxq) if not sym else zero
            q = dequant(quantize_codes(x, scale1, zero1, maxq), scale1, zero1)
            err = np.sum(np.abs(q - x) ** norm, axis=1)
            tmp = err < best
            best = np.where(tmp, err, best)
            scale = np.where(tmp, scale1, scale)
            zero = np.where(tmp, zero1, zero)
    return scale, zero


def _tie_margin(x, scale):
    """distance (in code units) of x/scale from the nearest rounding tie (half-integer)."""
    r = x / scale[:, None]
    return np.abs(np.abs(r - np.floor(r)) - 0.5)


def match_codes(ref, codes, eps=TIE_EPS):
    """Compare integer codes with a reference result, treating rounding ties fairly.
    A differing code whose reference x/scale is within eps of a half-integer is a tie. In GPTQ a
    code feeds its error forward along the row, so after a tie the rest of the row (in sweep order,
    ref["perm"]) legitimately follows another history: when a row's FIRST difference in sweep order
    is a tie, that row is excluded from there on. Without "perm" (RTN, AWQ) only the tie itself is.
    Returns (equal, compared, excluded, excluded_mask)."""
    rc = ref["codes"]
    codes = np.asarray(codes).astype(np.int64).reshape(rc.shape)
    diff = codes != rc
    tie = ref["tie_margin"] < eps
    perm = ref.get("perm")
    if perm is not None:
        d, t = diff[:, perm], tie[:, perm]
        ex = np.zeros_like(d)
        for row in np.nonzero(d.any(axis=1))[0]:
            first = int(np.argmax(d[row]))
            if t[row, first]:
                ex[row, first:] = True
        excl = np.zeros_like(ex)
        excl[:, perm] = ex
    else:
        excl = diff & tie
    n = rc.size - int(excl.sum())
    eq = n - int((diff & ~excl).sum())
    return eq, n, int(excl.sum()), excl


# ==============================================================================================
# RTN

def rtn(W, bits=4, gs=128, sym=True, mse=False, dtype=np.float64, ist_sym_quirk=False, scale_dtype=None):
    """Round-to-nearest with MinMax params per (row, group); scales as stored (store_scale)."""
    W = np.asarray(W, dtype=dtype)
    N, K = W.shape
    gsz = K if gs == -1 else gs
    if K % gsz:
        raise ValueError(f"group size {gs} does not divide K={K}")
    G = K // gsz
    maxq = 2 ** bits - 1
    codes = np.zeros((N, K), dtype=np.int64)
    scales = np.zeros((G, N), dtype=dtype)
    zeros = np.zeros((G, N), dtype=np.int64)
    margin = np.zeros((N, K), dtype=dtype)
    for g in range(G):
        x = W[:, g * gsz:(g + 1) * gsz]
        s, z = minmax_params(x, bits, sym, mse, ist_sym_quirk=ist_sym_quirk, scale_dtype=scale_dtype)
        codes[:, g * gsz:(g + 1) * gsz] = quantize_codes(x, s, z, maxq)
        margin[:, g * gsz:(g + 1) * gsz] = _tie_margin(x, s)
        scales[g], zeros[g] = s, z
    g_idx = np.arange(K) // gsz
    deq = (codes - zeros[g_idx].T) * scales[g_idx].T
    return dict(codes=codes, scales=scales, zeros=zeros, g_idx=g_idx.astype(np.int64),
                dequant=deq, tie_margin=margin, loss=float(np.sum((W - deq) ** 2) / 2), damp=None,
                fallback=None)


# ==============================================================================================
# GPTQ

def hessian(X, dtype=np.float64):
    """H = (2/T) X^T X over T calibration tokens (rows of X)."""
    X = np.asarray(X, dtype=dtype).reshape(-1, np.shape(X)[-1])
    return (2.0 / X.shape[0]) * (X.T @ X)


def _chol_inverse_upper(H):
    L = np.linalg.cholesky(H)                 # H = L L^T (raises LinAlgError when not PD)
    Linv = np.linalg.inv(L)
    Hi = Linv.T @ Linv                        # H^-1 via L (cholesky_inverse)
    Hi = (Hi + Hi.T) / 2
    return np.linalg.cholesky(Hi).T           # upper U with Hi = U^T U


def gptq(W, H, bits=4, gs=128, sym=True, act_order=False, static_groups=False, percdamp=0.01,
         mse=False, blocksize=128, dtype=np.float64, ist_sym_quirk=False, damp_increment=0.0015,
         perchannel_after_dead=False, scale_dtype=None):
    """GPTQ of one Linear (scales as stored: store_scale, before the codes). W [N,K], H [K,K]. Returns codes [N,K] (original column order),
    scales/zeros [G,N], g_idx [K], loss (float), damp (percdamp finally used), dequant [N,K],
    fallback (None or 'rtn'), tie_margin [N,K]."""
    W = np.array(W, dtype=dtype)
    H = np.array(H, dtype=dtype)
    N, K = W.shape
    maxq = 2 ** bits - 1
    gsz = K if gs == -1 else gs
    if K % gsz:
        raise ValueError(f"group size {gs} does not divide K={K}")
    G = K // gsz
    qp = dict(bits=bits, sym=sym, mse=mse, ist_sym_quirk=ist_sym_quirk, scale_dtype=scale_dtype)

    # gs = -1: one MinMax over the whole W, before dead columns (IST/GPTQModel: top of fasterquant)
    if gs == -1 and not perchannel_after_dead:
        cur_scale, cur_zero = minmax_params(W, **qp)

    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if gs == -1 and perchannel_after_dead:     # qdist's documented choice (docs/numerics.md)
        cur_scale, cur_zero = minmax_params(W, **qp)

    groups = None
    if static_groups and gs != -1:
        groups = [minmax_params(W[:, g * gsz:(g + 1) * gsz], **qp) for g in range(G)]

    if act_order:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = np.argsort(perm)
    else:
        perm = invperm = np.arange(K)

    # damping + Cholesky-inverse-upper, with the automatic damping schedule, then RTN fallback
    diag_mean = np.mean(np.diag(H))
    fallback = None
    pd = percdamp
    while True:
        Hd = H.copy()
        Hd[np.arange(K), np.arange(K)] += pd * diag_mean
        try:
            U = _chol_inverse_upper(Hd)
            if not np.all(np.isfinite(U)):
                raise np.linalg.LinAlgError("non-finite")
            break
        except np.linalg.LinAlgError:
            pd += damp_increment
            if pd >= 1:
                U = np.eye(K, dtype=dtype)
                fallback = "rtn"
                break

    Q = np.zeros_like(W)
    codes = np.zeros((N, K), dtype=np.int64)
    margin = np.zeros((N, K), dtype=dtype)
    Losses = np.zeros_like(W)
    scales = np.zeros((G, N), dtype=dtype)
    zeros = np.zeros((G, N), dtype=np.int64)
    if gs == -1:
        scales[0], zeros[0] = cur_scale, cur_zero

    for i1 in range(0, K, blocksize):
        i2 = min(i1 + blocksize, K)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(count):
            c = i1 + i
            w = W1[:, i]
            d = U1[i, i]
            if gs != -1:
                if not static_groups:
                    if c % gsz == 0:
                        # GLOBAL W: holds earlier blocks' lazy updates, not this block's
                        cur_scale, cur_zero = minmax_params(W[:, c:c + gsz], **qp)
                        scales[c // gsz], zeros[c // gsz] = cur_scale, cur_zero
                else:
                    g = perm[c] // gsz
                    cur_scale, cur_zero = groups[g]
                    if not act_order and c % gsz == 0:
                        scales[g], zeros[g] = cur_scale, cur_zero
            qc = quantize_codes(w[:, None], cur_scale, cur_zero, maxq)[:, 0]
            q = cur_scale * (qc - cur_zero)
            codes[:, c] = qc
            margin[:, c] = _tie_margin(w[:, None], cur_scale)[:, 0]
            Q[:, c] = q
            Losses[:, c] = (w - q) ** 2 / d ** 2 / 2
            e = (w - q) / d
            W1[:, i:] -= np.outer(e, U1[i, i:])
            Err1[:, i] = e
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]

    if static_groups and gs != -1:
        for g in range(G):
            scales[g], zeros[g] = groups[g]
    if static_groups and gs != -1:
        g_idx = np.arange(K) // gsz
    elif gs == -1:
        g_idx = np.zeros(K, dtype=np.int64)
    else:
        g_idx = (np.arange(K) // gsz)[invperm]
    Q = Q[:, invperm]
    codes = codes[:, invperm]
    margin = margin[:, invperm]
    return dict(codes=codes, scales=scales, zeros=zeros, g_idx=g_idx.astype(np.int64),
                dequant=Q, loss=float(Losses.sum()), damp=pd, fallback=fallback,
                tie_margin=margin, perm=perm, diag_mean=float(diag_mean),
                row_loss=Losses.sum(axis=1))


# ==============================================================================================
# AWQ (docs/reference/algorithms.md section 2, AutoAWQ)

def awq_pseudo_quant(w, bits, gs, sym=False, ztie=0, scale_dtype=None):
    """AutoAWQ pseudo_quantize_tensor, the scale as stored (store_scale) before the zero and codes.
    w [N,K]. Returns (dequant [N,K], codes [N,K], scales [G,N], zeros [G,N], tie_margin [N,K])."""
    N, K = w.shape
    gsz = K if gs == -1 else gs
    if K % gsz:
        raise ValueError(f"group size {gs} does not divide K={K}")
    G = K // gsz
    x = w.reshape(-1, gsz)
    if not sym:
        maxq = 2 ** bits - 1
        mx = x.max(axis=1, keepdims=True)
        mn = x.min(axis=1, keepdims=True)
        s = store_scale(np.maximum(mx - mn, 1e-5) / maxq, scale_dtype)
        z = np.clip(-np.round(mn / s), 0, maxq)
        r = np.round(x / s)
        if ztie:
            # resolve exact ties down (-1) or up (+1) instead of by float noise: ztie = zdir, or
            # (zdir, edir) for the zero point and the elements separately. After a clip that
            # clamps both ends, -min/s = maxq/2 and every clamped element sits at +-maxq/2 code
            # units: all of them are ties (see the header)
            zdir, edir = (ztie, ztie) if np.isscalar(ztie) else ztie
            zr = -mn / s
            t = np.abs(np.abs(zr - np.floor(zr)) - 0.5) < TIE_EPS
            z = np.where(t, np.clip(np.floor(zr) + (zdir > 0), 0, maxq), z)
            xr = x / s
            te = np.abs(np.abs(xr - np.floor(xr)) - 0.5) < TIE_EPS
            r = np.where(te, np.floor(xr) + (edir > 0), r)
        q = np.clip(r + z, 0, maxq)
        deq = (q - z) * s
    else:
        mx = np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-5)
        maxi, mini = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))
        s = store_scale(mx / maxi, scale_dtype)
        qs = np.clip(np.round(x / s), mini, maxi)
        deq = qs * s
        z = np.full_like(s, 2 ** (bits - 1))
        q = qs + z
    r = x / s
    margin = np.abs(np.abs(r - np.floor(r)) - 0.5)
    if not sym:
        # zero-point ties: after a clip that clamps both ends (min = -m, max = m) -min/s is 7.5
        # up to rounding noise, so z = 7 or 8 is decided by float noise: the whole group is a tie
        zr = -mn / s
        zmargin = np.abs(np.abs(zr - np.floor(zr)) - 0.5)
        margin = np.minimum(margin, zmargin)
    return (deq.reshape(N, K), q.reshape(N, K).astype(np.int64), s.reshape(N, G).T.copy(),
            z.reshape(N, G).T.astype(np.int64), margin.reshape(N, K))


def awq_w_mean(weights, gs):
    """concatenate the scaled layers' weights (rows), |w| / (group amax + 1e-6), mean over rows."""
    w = np.concatenate(weights, axis=0)
    N, K = w.shape
    gsz = K if gs == -1 else gs
    a = np.abs(w).reshape(-1, gsz)
    ws = a / (a.max(axis=1, keepdims=True) + 1e-6)
    return ws.reshape(N, K).mean(axis=0)


def awq_x_mean(x):
    x = np.asarray(x)
    return np.abs(x.reshape(-1, x.shape[-1])).mean(axis=0)


def awq_search_scale(x, weights, forward, bits, gs, n_grid=20, duo_scaling=True, sym=False, scale_dtype=None):
    """Grid search of one mapping.
    x: cached input of the scaled layers; weights: list of the scaled layers' W [N_i, K];
    forward(list_of_W) -> output of the loss module with those weights in place of the originals.
    Returns (best_scales [K], best_ratio, history of losses)."""
    x_mean = awq_x_mean(x)
    w_mean = awq_w_mean(weights, gs)
    fp_out = forward(weights)
    best, best_ratio, best_s, hist = np.inf, -1, None, []
    for k in range(n_grid):
        r = k / n_grid
        if duo_scaling:
            s = np.maximum(x_mean ** r / (w_mean ** (1 - r) + 1e-4), 1e-4)
        else:
            s = np.maximum(x_mean ** r, 1e-4)
        s = s / np.sqrt(s.max() * s.min())
        s = np.where(np.isfinite(s), s, 1.0)
        trial = [awq_pseudo_quant(w * s[None, :], bits, gs, sym, scale_dtype=scale_dtype)[0] / s[None, :]
                 for w in weights]
        out = forward(trial)
        loss = float(np.mean((fp_out - out) ** 2))
        hist.append(loss)
        if loss < best:
            best, best_ratio, best_s = loss, r, s.copy()
    return best_s, best_ratio, hist


def _group_dot(xg, wg):
    """per group g: out[n, t, g] = sum_k xg[t, g, k] * wg[n, g, k] (2-D GEMMs for BLAS speed)"""
    out = np.empty((wg.shape[0], xg.shape[0], xg.shape[1]), dtype=np.result_type(xg, wg))
    for g in range(xg.shape[1]):
        out[:, :, g] = wg[:, g, :] @ xg[:, g, :].T
    return out


def awq_search_clip(w, x, bits, gs, n_grid=20, max_shrink=0.5, n_sample_token=512, oc_batch=256,
                    sym=False, return_ties=False, scale_dtype=None):
    """auto_clip for one Linear. w [N,K], x [..., K] (already divided by the AWQ scales).
    Returns best max value per (row, group): [N, G]; with return_ties also a bool [N, G] marking
    the (row, group)s whose choice changes when zero-point ties are resolved down or up instead of
    by float noise (a choice two correct implementations can make differently)."""
    N, K = w.shape
    gsz = K if gs == -1 else gs
    G = K // gsz
    x = np.asarray(x).reshape(-1, K)
    step = max(1, x.shape[0] // n_sample_token)
    x = x[::step]                                           # [t, K]
    xg = x.reshape(x.shape[0], G, gsz)                      # [t, G, gsz]
    best_all, tie_all = [], []
    for b0 in range(0, N, oc_batch):
        wb = w[b0:b0 + oc_batch].reshape(-1, G, gsz)        # [n, G, gsz]
        org_max = np.abs(wb).max(axis=-1, keepdims=True)    # [n, G, 1]
        org_out = _group_dot(xg, wb)
        picks = []
        modes = (0, (-1, -1), (1, 1), (-1, 1), (1, -1)) if (return_ties and not sym) else (0,)
        for ztie in modes:
            best_max = org_max.copy()
            min_err = np.full(org_max.shape, 1e9)
            errs = []
            for i_s in range(int(max_shrink * n_grid)):
                mx = org_max * (1 - i_s / n_grid)
                cur = np.clip(wb, -mx, mx)
                qw = awq_pseudo_quant(cur.reshape(-1, K), bits, gs, sym, ztie, scale_dtype)[0].reshape(wb.shape)
                out = _group_dot(xg, qw)
                err = ((out - org_out) ** 2).mean(axis=1)[..., None]   # [n, G, 1]
                errs.append(err[..., 0])
                better = err < min_err
                min_err = np.where(better, err, min_err)
                best_max = np.where(better, mx, best_max)
            picks.append(best_max[..., 0])
            if ztie == 0:
                # near ties: another shrink within CLIP_NEAR (relative) of the best error, where
                # float32 noise in err (a mean of squared small differences of large dot products)
                # can pick either
                e = np.stack(errs)                                  # [steps, n, G]
                emin = e.min(axis=0)
                near = ((e <= emin * (1 + CLIP_NEAR)).sum(axis=0) > 1)
        best_all.append(picks[0])
        tie_all.append(np.any([p != picks[0] for p in picks], axis=0) | near)
    if return_ties:
        return np.concatenate(best_all, axis=0), np.concatenate(tie_all, axis=0)
    return np.concatenate(best_all, axis=0)


def awq_apply_clip(w, max_val, gs):
    N, K = w.shape
    gsz = K if gs == -1 else gs
    wg = w.reshape(N, K // gsz, gsz)
    m = max_val[..., None]
    return np.clip(wg, -m, m).reshape(N, K)
