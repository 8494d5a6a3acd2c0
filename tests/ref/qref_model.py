"""Whole-model reference quantizer (numpy) for qdist's tests: RTN, GPTQ (true-sequential, quantized
chain) and AWQ (full-precision chain), plus perplexity (docs/reference/algorithms.md section 5).

Built on qforward.py (the reference forward, itself checked against transformers) and qref.py (the
per-layer algorithms). Written from docs/reference/algorithms.md, not from qdist's C code.

Calibration: `calib` is an int array [nsamples, seqlen]; every row is an independent sequence
(positions from 0, causal inside the row). `calib_windows` builds it from a list of token-id lists
the way `--calib-mode concat` is described: concatenate all lists in order, cut consecutive windows
of seqlen, keep the first nsamples.

GPTQ (IST / GPTQModel):
  block input x_i = output of the QUANTIZED block i-1 (second forward after quantizing the block);
  inside a block, groups [q,k,v] -> [o] -> [gate,up] -> [down] ("true sequential"): the Hessian of
  a group comes from a forward of the block in which the earlier groups already hold their
  dequantised weights. H = (2/T) X^T X, T = nsamples * seqlen tokens.
  The dequantised weight put back into the model is float32 (scale * (q - zero) rounded to f32, as
  an fp32 engine stores it); `chain_f16_scales=True` instead stores every scale as F16 (qdist's rule:
  each scale is rounded to F16 BEFORE its zero and codes are chosen, qref.store_scale, and the chain
  and the fake-quantised state carry code x stored scale; its fake output equals its export).
RTN/AWQ "loss" = sum (w - q)^2 / 2 over the (scaled, clipped) weight, as qdist reports it.
Teacher forcing (`force={prefix: dequantised weight}`, GPTQ): each layer is still quantized by the
reference, but the chain carries on with the given (e.g. qdist's) weights. Without it, one code
that two correct tools round differently at an exact tie (frequent with --sym: a group's extreme
value sits at exactly -(maxq+1)/2 code units) changes the next groups' Hessians materially and the
two runs drift apart layer after layer (measured: float32 vs float64 reference on stories260K W4
per-channel sym: block 0 100% apart from tie rows, then 82-97% per layer); with forcing, every
layer is compared on the same inputs.
AWQ (AutoAWQ): per block, inputs of every Linear recorded from one forward of the unmodified block,
  whose output is the next block's input (full-precision chain); scales of all mappings searched
  against the unmodified block, then applied (norm weights divided, weights multiplied, cached inputs
  divided), clip search (not q/k), pseudo-quantisation.
RTN: MinMax per (row, group) of the original weights.

Everything is computed in float64 by default (`dtype`).
"""
from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np

import qforward as qf
import qref

SEQUENTIAL = [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"],
              ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]


def calib_windows(id_lists, nsamples, seqlen):
    stream = np.concatenate([np.asarray(x, dtype=np.int64) for x in id_lists])
    n = len(stream) // seqlen
    if n < nsamples:
        raise ValueError(f"calibration has {len(stream)} tokens, fewer than {nsamples} x {seqlen}")
    return stream[: nsamples * seqlen].reshape(nsamples, seqlen)


def read_ids_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _f16_round(x):
    return np.asarray(x, dtype=np.float16).astype(np.float64)


def _chain_weight(res, chain_f16_scales):
    """the weight a quantized Linear carries on: scale * (q - zero) as float32; with
    chain_f16_scales the scales are first rounded to F16 (qdist's fake output and chain)."""
    if chain_f16_scales:
        g = res["g_idx"]
        s = _f16_round(res["scales"])[g].T
        z = res["zeros"][g].T
        return ((res["codes"] - z) * s).astype(np.float32)
    return np.asarray(res["dequant"], dtype=np.float32)


def quantize_model(model, calib, method="gptq", bits=4, gs=128, sym=True, act_order=False,
                   static_groups=False, percdamp=0.01, mse=False, true_sequential=True,
                   dtype=np.float64, chain_f16_scales=False, awq_clip=True, skip=(),
                   log=None, force=None, awq_tie_analysis=True):
    """model: HF directory or (Config, weights). Returns dict:
       layers: {"model.layers.i.<linear>": per-layer result (codes, scales, zeros, g_idx, loss,
                damp, dequant, fallback, tie_margin, [awq: awq_scale, ratio])}
       state: fake-quantised state dict (float32), AWQ norms rescaled.
    """
    cfg, weights = qf.load_model_dir(model) if isinstance(model, str) else model
    state = {k: np.array(v) for k, v in weights.items()}
    calib = np.asarray(calib)
    if calib.ndim == 1:
        calib = calib[None]
    T = calib.shape[1]
    cos, sin = qf.rope_cos_sin(cfg, T, dtype)
    layers = {}
    x = qf.embed(calib, weights, dtype) if method != "rtn" else None

    for i in range(cfg.n_layers):
        p = qf.layer_prefix(i)
        lw = {k: np.array(v) for k, v in qf.block_weights(weights, i).items()}
        if method == "rtn":
            for name in qf.LINEARS:
                if p + name in skip:
                    continue
                r = qref.rtn(lw[name + ".weight"], bits, gs, sym, mse, dtype,
                             scale_dtype="f16" if chain_f16_scales else None)
                layers[p + name] = r
                state[p + name + ".weight"] = _chain_weight(r, chain_f16_scales)
            continue
        if method == "gptq":
            groups = SEQUENTIAL if true_sequential else [sum(SEQUENTIAL, [])]
            for grp in groups:
                hooks = {}
                qf.block_forward(x, lw, cfg, cos, sin, hooks)
                H = qref.hessian(hooks[grp[0]], dtype)
                for name in grp:
                    if p + name in skip:
                        continue
                    r = qref.gptq(lw[name + ".weight"], H, bits, gs, sym, act_order, static_groups,
                                  percdamp, mse, dtype=dtype, scale_dtype="f16" if chain_f16_scales else None)
                    r["nsamples_tokens"] = hooks[grp[0]].size // hooks[grp[0]].shape[-1]
                    layers[p + name] = r
                    if force is not None and p + name in force:
                        # teacher forcing: carry on with the other tool's quantized weight, so
                        # every later layer is compared on the same inputs (see the header)
                        lw[name + ".weight"] = np.asarray(force[p + name], dtype=np.float32)
                    else:
                        lw[name + ".weight"] = _chain_weight(r, chain_f16_scales)
                    if log:
                        log(f"{p + name}: loss {r['loss']:.6g} damp {r['damp']:.4g}"
                            f"{' fallback ' + r['fallback'] if r['fallback'] else ''}")
            x = qf.block_forward(x, lw, cfg, cos, sin)
        elif method == "awq":
            lw = {k: v.astype(dtype) for k, v in lw.items()}     # search/apply/clip in dtype
            hooks = {}
            x_next = qf.block_forward(x, lw, cfg, cos, sin, hooks)
            _awq_block(lw, hooks, cfg, cos, sin, bits, gs, sym, awq_clip, p, layers, skip, log,
                       chain_f16_scales, awq_tie_analysis)
            x = x_next
        else:
            raise ValueError(method)
        for k, v in lw.items():
            state[p + k] = np.asarray(v, dtype=np.float32)
    return dict(layers=layers, state=state, cfg=cfg)


def _awq_block(lw, hooks, cfg, cos, sin, bits, gs, sym, clip, p, layers, skip, log,
               chain_f16_scales=False, tie_analysis=True):
    W = lambda n: lw[n + ".weight"]  # noqa: E731
    sd = "f16" if chain_f16_scales else None  # scales stored as F16 in the search, the clip and the result
    q, k, v, o = "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"
    g, u, d = "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"

    def attn_fwd(ws):
        lw2 = dict(lw)
        for n, w in zip((q, k, v), ws):
            lw2[n + ".weight"] = w
        return qf.attention(hooks[q], lw2, cfg, cos, sin)

    def mlp_fwd(ws):
        lw2 = dict(lw)
        lw2[g + ".weight"], lw2[u + ".weight"] = ws
        return qf.mlp(hooks[g], lw2)

    def lin_fwd(name):
        return lambda ws: qf.linear(hooks[name], ws[0])

    # mappings: (prev op, scaled layers, loss module)
    maps = [("input_layernorm", [q, k, v], attn_fwd)]
    if W(v).shape[0] == W(o).shape[1]:
        maps.append((v, [o], lin_fwd(o)))
    maps.append(("post_attention_layernorm", [g, u], mlp_fwd))
    maps.append((u, [d], lin_fwd(d)))

    found = []
    for prev, names, fwd in maps:       # all searched against the unmodified block
        s, ratio, hist = qref.awq_search_scale(hooks[names[0]], [W(n) for n in names], fwd, bits, gs,
                                               sym=sym, scale_dtype=sd)
        found.append((prev, names, s, ratio))
        if log:
            log(f"{p}{'+'.join(names)}: ratio {ratio} loss {min(hist):.6g}")
    for prev, names, s, ratio in found:  # apply
        if prev.endswith("layernorm"):
            lw[prev + ".weight"] = lw[prev + ".weight"] / s
            if prev + ".bias" in lw:
                lw[prev + ".bias"] = lw[prev + ".bias"] / s
        else:
            lw[prev + ".weight"] = lw[prev + ".weight"] / s[:, None]
            if prev + ".bias" in lw:
                lw[prev + ".bias"] = lw[prev + ".bias"] / s
        for n in names:
            lw[n + ".weight"] = lw[n + ".weight"] * s[None, :]
            hooks[n] = hooks[n] / s
    scale_of = {n: (s, ratio) for _, names, s, ratio in found for n in names}
    for n in qf.LINEARS:
        if p + n in skip:
            continue
        clip_tie = None
        if clip and n not in (q, k):
            if tie_analysis:
                mv, clip_tie = qref.awq_search_clip(W(n), hooks[n], bits, gs, sym=sym,
                                                    return_ties=True, scale_dtype=sd)
            else:
                mv = qref.awq_search_clip(W(n), hooks[n], bits, gs, sym=sym, scale_dtype=sd)
            lw[n + ".weight"] = qref.awq_apply_clip(W(n), mv, gs)
        deq, codes, sc, zs, margin = qref.awq_pseudo_quant(W(n), bits, gs, sym, scale_dtype=sd)
        K = W(n).shape[1]
        gsz = K if gs == -1 else gs
        if clip_tie is not None:     # a clip choice decided by a zero-point tie: the group is a tie
            margin = np.where(np.repeat(clip_tie, gsz, axis=1), 0.0, margin)
        r = dict(codes=codes, scales=sc, zeros=zs, g_idx=np.arange(K) // gsz, dequant=deq,
                 tie_margin=margin, loss=float(np.sum((W(n) - deq) ** 2) / 2), damp=None,
                 fallback=None,
                 awq_scale=scale_of.get(n, (None, None))[0], ratio=scale_of.get(n, (None, None))[1])
        layers[p + n] = r
        lw[n + ".weight"] = _chain_weight(r, chain_f16_scales)


def perplexity(model, tokens, seqlen, dtype=np.float32):
    """docs/reference/algorithms.md section 5 on a model dir, (cfg, weights) or a quantize_model() result."""
    if isinstance(model, dict) and "state" in model:
        cfg, w = model["cfg"], model["state"]
    elif isinstance(model, str):
        cfg, w = qf.load_model_dir(model)
    else:
        cfg, w = model
    return qf.perplexity(tokens, w, cfg, seqlen, dtype)


def write_fake_model(src_dir, out_dir, result):
    """HF directory with the fake-quantised (dequantised) float32 weights, config/tokenizer copied."""
    os.makedirs(out_dir, exist_ok=True)
    for fn in os.listdir(src_dir):
        if (fn.endswith(".json") or fn.endswith(".txt") and "merges" in fn) and \
                not fn.startswith("model.safetensors"):
            shutil.copy(os.path.join(src_dir, fn), out_dir)
    cfgp = os.path.join(out_dir, "config.json")
    with open(cfgp) as f:
        c = json.load(f)
    c["torch_dtype"] = "float32"
    with open(cfgp, "w") as f:
        json.dump(c, f, indent=2)
    qf.write_safetensors(os.path.join(out_dir, "model.safetensors"),
                         {k: np.asarray(v, dtype=np.float32) for k, v in result["state"].items()},
                         {"format": "pt"})


def write_truncated_model(src_dir, out_dir, n_layers):
    """A copy of an HF Llama directory keeping only the first n_layers blocks (real weights, for
    fast whole-model tests); float32 safetensors, tokenizer and config copied."""
    cfg, w = qf.load_model_dir(src_dir)
    keep = {k: v for k, v in w.items()
            if not k.startswith("model.layers.") or int(k.split(".")[2]) < n_layers}
    write_fake_model(src_dir, out_dir, {"state": keep})
    cfgp = os.path.join(out_dir, "config.json")
    with open(cfgp) as f:
        c = json.load(f)
    c["num_hidden_layers"] = n_layers
    c.pop("dtype", None)
    with open(cfgp, "w") as f:
        json.dump(c, f, indent=2)


def tokenize_file(model_dir, text_path, max_chars=None):
    """Tokenise a text file once with the model's tokenizer.json (special tokens as the HF
    tokenizer adds them by default, e.g. one BOS at the start of the stream)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    with open(text_path, encoding="utf-8") as f:
        text = f.read() if max_chars is None else f.read(max_chars)
    return np.array(tok.encode(text).ids, dtype=np.int64)


def compare_codes(ref_layers, got_codes, tie_eps=qref.TIE_EPS):
    """per-layer (equal, compared, excluded_by_ties) and the overall fraction (qref.match_codes)."""
    per, eq_all, tot_all = {}, 0, 0
    for name, r in ref_layers.items():
        eq, n, ex, _ = qref.match_codes(r, got_codes[name], tie_eps)
        per[name] = (eq, n, ex)
        eq_all += eq
        tot_all += n
    return per, (eq_all / tot_all if tot_all else math.nan)
