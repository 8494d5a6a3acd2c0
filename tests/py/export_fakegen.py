# SPDX-License-Identifier: MIT
"""Fake-quant directories for the export tests, written from the description of
`qdist quantize --format fake` (not from qdist's code): for each quantized Linear "<prefix>":
  <prefix>.weight    F32 [N,K]  dequantised: (code - zero[g][n]) * scale[g][n], g = g_idx[k]
  <prefix>.qd_codes  U8  [N,K]  codes 0..2^b-1, original column order
  <prefix>.qd_scales F32 [G,N]  (F16-rounded, as qdist's GPTQ/AWQ exports store them)
  <prefix>.qd_zeros  I32 [G,N]  true zero points
  <prefix>.qd_g_idx  I32 [K]
other tensors as in the source, config/tokenizer files copied, qdist_report.json with per-module
bits / group_size / sym / method and the run settings. Codes come from min-max RTN of the real
weights (so the model still talks), with a random act-order permutation when asked.

Also: a synthetic Llama with dimensions every format can pack (tiny128), from stories260K's tokenizer.
"""
import json
import os
import shutil

import numpy as np
from safetensors.numpy import save_file

NP_DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
             "I8": np.int8, "F64": np.float64}


def read_st(path):
    """{name: (dtype string, numpy array)}; BF16 comes back as float32 (exact), dtype "BF16" """
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        raw = data[base + b:base + e]
        if v["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, NP_DTYPES[v["dtype"]])
        out[k] = (v["dtype"], a.reshape(v["shape"]).copy())
    return out


def write_st(path, tensors):
    """tensors: {name: (dtype string, array)}; BF16 arrays are float32 values already bf16-exact"""
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        dt, v = tensors[k]
        if dt == "BF16":
            raw = (np.ascontiguousarray(v, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raw = np.ascontiguousarray(v, NP_DTYPES[dt]).tobytes()
        header[k] = {"dtype": dt, "shape": list(np.shape(v)), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def _np_dtype_name(a):
    return {np.dtype(v): k for k, v in NP_DTYPES.items()}[a.dtype]

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

BF16 = "bfloat16"


def f16_round(x):
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def bf16_round(x):
    """round-to-nearest-even to bfloat16, kept in float32"""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def rtn(w, bits, gs, sym, g_idx, G, clamp_z1=False, rng=None):
    """min-max RTN per group (groups given by g_idx); returns codes [N,K] u8, scales [G,N], zeros [G,N]"""
    N, K = w.shape
    maxq = 2 ** bits - 1
    scales = np.zeros((G, N), np.float32)
    zeros = np.zeros((G, N), np.int32)
    codes = np.zeros((N, K), np.uint8)
    for g in range(G):
        cols = np.nonzero(g_idx == g)[0]
        wg = w[:, cols].astype(np.float64)
        xmin = np.minimum(wg.min(axis=1), 0)
        xmax = np.maximum(wg.max(axis=1), 0)
        if sym:
            xmax = np.maximum(np.abs(xmin), xmax)
            xmin = -xmax
        s = (xmax - xmin) / maxq
        s[s == 0] = 1.0
        s = f16_round(s)
        if sym:
            z = np.full(N, 2 ** (bits - 1), np.int64)
        else:
            z = np.clip(np.round(-xmin / s), 0, maxq).astype(np.int64)
            if clamp_z1:
                z = np.maximum(z, 1)
        q = np.clip(np.round(wg / s[:, None]) + z[:, None], 0, maxq)
        codes[:, cols] = q.astype(np.uint8)
        scales[g] = s
        zeros[g] = z
    return codes, scales, zeros


def round_scales(s, dtype_name):
    """the scales the fake weights were computed with: qd_scales rounded to settings.scale_dtype"""
    return {"F16": f16_round, "BF16": bf16_round}.get(dtype_name, lambda x: np.asarray(x, np.float32))(s)


def dequant(codes, scales, zeros, g_idx):
    s = scales[g_idx].T  # [N,K]
    z = zeros[g_idx].T
    return ((codes.astype(np.int32) - z).astype(np.float32) * s).astype(np.float32)


def linear_prefixes(tensors):
    out = []
    for name, t in tensors.items():
        if name.startswith("model.layers.") and name.endswith(".weight") and t.ndim == 2:
            out.append(name[:-len(".weight")])
    return sorted(out)


def make_fake(src_dir, out_dir, bits=4, group_size=32, sym=True, act_order=False, static_groups=False,
              overrides=None, clamp_z1=False, lm_head=False, seed=0, scale_round=f16_round):
    """overrides: {module suffix or prefix: None (leave unquantized) | dict(bits=, group_size=, sym=)}"""
    overrides = overrides or {}
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    src = read_st(os.path.join(src_dir, "model.safetensors"))
    with open(os.path.join(src_dir, "config.json")) as f:
        cfg = json.load(f)
    out = dict(src)
    modules = {}
    prefixes = linear_prefixes({k: v for k, (_, v) in src.items()})
    if lm_head:
        if "lm_head.weight" not in src:
            raise ValueError("no lm_head.weight to quantize")
        prefixes.append("lm_head")
    for prefix in prefixes:
        ov = {}
        for key, val in overrides.items():
            if prefix == key or prefix.endswith("." + key):
                ov = val
        if ov is None:
            continue
        b, gs, sy = ov.get("bits", bits), ov.get("group_size", group_size), ov.get("sym", sym)
        w = src[prefix + ".weight"][1].astype(np.float32)
        N, K = w.shape
        G = 1 if gs == -1 else (K + gs - 1) // gs
        if act_order and not static_groups:
            perm = rng.permutation(K)
            invperm = np.argsort(perm)
            g_idx = (invperm // (K if gs == -1 else gs)).astype(np.int32)
        else:
            g_idx = (np.arange(K) // (K if gs == -1 else gs)).astype(np.int32)
        codes, scales, zeros = rtn(w, b, gs, sy, g_idx, G, clamp_z1=clamp_z1)
        scales = scale_round(scales)
        out[prefix + ".weight"] = ("F32", dequant(codes, scales, zeros, g_idx))
        out[prefix + ".qd_codes"] = ("U8", codes)
        out[prefix + ".qd_scales"] = ("F32", scales)
        out[prefix + ".qd_zeros"] = ("I32", zeros)
        out[prefix + ".qd_g_idx"] = ("I32", g_idx)
        modules[prefix] = {"bits": b, "group_size": gs, "sym": bool(sy), "method": "rtn"}
    write_st(os.path.join(out_dir, "model.safetensors"), out)
    for fn in os.listdir(src_dir):
        if fn.endswith(".safetensors") or fn.endswith(".index.json"):
            continue
        p = os.path.join(src_dir, fn)
        if os.path.isfile(p):
            shutil.copyfile(p, os.path.join(out_dir, fn))
    report = {"modules": modules,
              "settings": {"act_order": act_order, "static_groups": static_groups, "damp": 0.01,
                           "method": "rtn", "true_sequential": True,
                           "scale_dtype": "BF16" if scale_round is bf16_round else "F16"}}
    with open(os.path.join(out_dir, "qdist_report.json"), "w") as f:
        json.dump(report, f, indent=1)
    return cfg


def make_tiny128(fixture_dir, out_dir, dtype="float32", seed=1, bias=False):
    """A 2-block Llama whose Linear shapes every format packs (hidden 128, intermediate 256, heads 4 x 32,
    kv 2), random weights, stories260K's tokenizer (vocab 512). dtype float32 or bfloat16 (stored BF16)."""
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    H, I, V, L, nh, nkv, hd = 128, 256, 512, 2, 4, 2, 32
    t = {"model.embed_tokens.weight": rng.standard_normal((V, H)) * 0.5,
         "model.norm.weight": 1 + 0.1 * rng.standard_normal(H),
         "lm_head.weight": rng.standard_normal((V, H)) / np.sqrt(H)}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(H)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(H)
        for name, shape in [("self_attn.q_proj", (nh * hd, H)), ("self_attn.k_proj", (nkv * hd, H)),
                            ("self_attn.v_proj", (nkv * hd, H)), ("self_attn.o_proj", (H, nh * hd)),
                            ("mlp.gate_proj", (I, H)), ("mlp.up_proj", (I, H)), ("mlp.down_proj", (H, I))]:
            t[p + name + ".weight"] = rng.standard_normal(shape) / np.sqrt(shape[1])
            if bias and name.startswith("self_attn."):
                t[p + name + ".bias"] = 0.1 * rng.standard_normal(shape[0])
    t = {k: v.astype(np.float32) for k, v in t.items()}
    if dtype == BF16:
        write_st(os.path.join(out_dir, "model.safetensors"), {k: ("BF16", bf16_round(v)) for k, v in t.items()})
    else:
        save_file(t, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
           "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": nh, "attention_bias": bias,
           "num_key_value_heads": nkv, "head_dim": hd, "vocab_size": V, "max_position_embeddings": 256,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
           "mlp_bias": False, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
           "torch_dtype": dtype}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    for fn in os.listdir(fixture_dir):
        if fn.startswith("tokenizer") or fn in ("special_tokens_map.json", "generation_config.json"):
            shutil.copyfile(os.path.join(fixture_dir, fn), os.path.join(out_dir, fn))
    return out_dir
