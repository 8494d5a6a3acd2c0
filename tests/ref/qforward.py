"""Reference decoder forward for qdist tests (numpy), written from
docs/reference/algorithms.md section 3, not from qdist's C code.

Llama / Mistral / Qwen2 (q/k/v bias) / Qwen3 (q/k norm) blocks:
  h   = x + o_proj(Attn(RMSNorm_in(x)))
  out = h + down(silu(gate(n)) * up(n)),  n = RMSNorm_post(h)
  model: embed -> blocks -> final norm -> lm_head (tied to embed when tie_word_embeddings)
RMSNorm: x * 1/sqrt(mean(x^2) + eps) computed in the working dtype, cast back, THEN times weight.
Attention: scale head_dim^-0.5, GQA (query head h uses kv head h // (heads/kv_heads)), causal mask,
softmax in the working dtype (float32 or float64, never lower).
RoPE: half-split (rotate_half(x1, x2) = (-x2, x1)), inv_freq[i] = theta^(-2i/d), optional llama3
rope_scaling (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings).

Precision: every function computes in `dtype` (default float64, the "exact" reference; float32 is
accepted to mimic an fp32 engine). Weights are stored as float32 (bf16/f16 files are widened
exactly) and cast to `dtype` at use.

Each calibration / evaluation sequence is an independent batch row: positions 0..T-1, causal mask
inside the row, no cross-row attention.
"""
from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

# ----------------------------------------------------------------------------------------------
# safetensors I/O (tiny, dependency-free so it also reads BF16 without torch)

_ST_DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I32": np.int32, "I64": np.int64,
          "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16, "U32": np.uint32,
          "BOOL": np.bool_}


def read_safetensors(path):
    """Return {name: np.ndarray}; BF16 is widened to float32 exactly."""
    out = {}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[b:e]
        shape = info["shape"]
        if info["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32).reshape(shape)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_ST_DT[info["dtype"]]).newbyteorder("<"))
            arr = arr.reshape(shape).copy()
        out[name] = arr
    return out


def write_safetensors(path, tensors, metadata=None):
    """Minimal writer (F32/I32/U8/F16/I64); tensors aligned to 8 bytes."""
    rev = {np.dtype(v).str[1:]: k for k, v in _ST_DT.items()}
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        dt = rev[np.dtype(a.dtype).str[1:]]
        raw = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_model_dir(model_dir):
    """config dict + {name: float32 array} over every model*.safetensors of an HF directory."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    weights = {}
    for fn in sorted(os.listdir(model_dir)):
        if fn.endswith(".safetensors") and fn.startswith("model"):
            for k, v in read_safetensors(os.path.join(model_dir, fn)).items():
                weights[k] = v.astype(np.float32) if v.dtype in (np.float16,) else v
    return Config(cfg), weights


# ----------------------------------------------------------------------------------------------

class Config:
    def __init__(self, d):
        self.raw = d
        self.model_type = d.get("model_type", "llama")
        self.hidden = d["hidden_size"]
        self.inter = d["intermediate_size"]
        self.n_layers = d["num_hidden_layers"]
        self.n_heads = d["num_attention_heads"]
        self.n_kv = d.get("num_key_value_heads") or self.n_heads
        self.head_dim = d.get("head_dim") or self.hidden // self.n_heads
        self.eps = d.get("rms_norm_eps", 1e-6)
        self.theta = d.get("rope_theta", 10000.0)
        self.rope_scaling = d.get("rope_scaling")
        if self.rope_scaling is None and isinstance(d.get("rope_parameters"), dict):
            rp = d["rope_parameters"]
            self.theta = rp.get("rope_theta", self.theta)
            if rp.get("rope_type", "default") != "default":
                self.rope_scaling = rp
        self.tie = d.get("tie_word_embeddings", False)
        self.vocab = d["vocab_size"]


LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def layer_prefix(i):
    return f"model.layers.{i}."


def rope_inv_freq(cfg, dtype=np.float64):
    d = cfg.head_dim
    inv = 1.0 / (cfg.theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    rs = cfg.rope_scaling
    if rs and (rs.get("rope_type") or rs.get("type")) == "llama3":
        factor = rs["factor"]
        low = rs.get("low_freq_factor", 1.0)
        high = rs.get("high_freq_factor", 4.0)
        orig = rs["original_max_position_embeddings"]
        low_wl = orig / low
        high_wl = orig / high
        wavelen = 2 * math.pi / inv
        out = np.where(wavelen > low_wl, inv / factor, inv)
        s = (orig / wavelen - low) / (high - low)
        smoothed = (1 - s) * out / factor + s * out
        medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
        inv = np.where(medium, smoothed, out)
    elif rs and (rs.get("rope_type") or rs.get("type")) not in (None, "default"):
        raise NotImplementedError(f"rope_scaling {rs}")
    return inv.astype(dtype)


def rope_cos_sin(cfg, T, dtype=np.float64):
    inv = rope_inv_freq(cfg, np.float32 if dtype == np.float32 else np.float64)
    pos = np.arange(T, dtype=inv.dtype)
    freqs = np.outer(pos, inv)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(dtype), np.sin(emb).astype(dtype)


def rmsnorm(x, w, eps):
    var = np.mean(x * x, axis=-1, keepdims=True)
    return (x / np.sqrt(var + eps)) * w.astype(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def linear(x, w, b=None):
    # 2-D GEMM (numpy's stacked matmul does not reach BLAS efficiently)
    y = (x.reshape(-1, x.shape[-1]) @ w.astype(x.dtype).T).reshape(*x.shape[:-1], w.shape[0])
    if b is not None:
        y = y + b.astype(x.dtype)
    return y


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def block_weights(weights, i):
    """dict of one block's tensors keyed by the suffix after 'model.layers.i.'"""
    p = layer_prefix(i)
    return {k[len(p):]: v for k, v in weights.items() if k.startswith(p)}


def attention(xn, lw, cfg, cos, sin, hooks=None):
    """Attention module (q/k/v, RoPE, causal softmax, o_proj). xn: [B,T,H] normalised input."""
    B, T, _ = xn.shape
    nh, nkv, hd = cfg.n_heads, cfg.n_kv, cfg.head_dim
    if hooks is not None:
        for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            hooks[n] = xn
    q = linear(xn, lw["self_attn.q_proj.weight"], lw.get("self_attn.q_proj.bias"))
    k = linear(xn, lw["self_attn.k_proj.weight"], lw.get("self_attn.k_proj.bias"))
    v = linear(xn, lw["self_attn.v_proj.weight"], lw.get("self_attn.v_proj.bias"))
    q = q.reshape(B, T, nh, hd).transpose(0, 2, 1, 3)
    k = k.reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)
    v = v.reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)
    if "self_attn.q_norm.weight" in lw:        # Qwen3: per-head RMSNorm before RoPE
        q = rmsnorm(q, lw["self_attn.q_norm.weight"], cfg.eps)
        k = rmsnorm(k, lw["self_attn.k_norm.weight"], cfg.eps)
    c, s = cos[:T], sin[:T]
    q = q * c + rotate_half(q) * s
    k = k * c + rotate_half(k) * s
    rep = nh // nkv
    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    o = np.empty((B, nh, T, hd), dtype=q.dtype)
    for b in range(B):                     # one sequence at a time bounds the [heads, T, T] scores
        for h in range(nh):
            kv = h // rep                  # GQA: query head h reads kv head h // (heads / kv_heads)
            scores = (q[b, h] @ k[b, kv].T) * (hd ** -0.5)
            scores = np.where(mask, -np.inf, scores)
            o[b, h] = softmax(scores, -1) @ v[b, kv]
    o = o.transpose(0, 2, 1, 3).reshape(B, T, nh * hd)
    if hooks is not None:
        hooks["self_attn.o_proj"] = o
    return linear(o, lw["self_attn.o_proj.weight"], lw.get("self_attn.o_proj.bias"))


def mlp(n, lw, hooks=None):
    if hooks is not None:
        hooks["mlp.gate_proj"] = n
        hooks["mlp.up_proj"] = n
    a = silu(linear(n, lw["mlp.gate_proj.weight"])) * linear(n, lw["mlp.up_proj.weight"])
    if hooks is not None:
        hooks["mlp.down_proj"] = a
    return linear(a, lw["mlp.down_proj.weight"])


def block_forward(x, lw, cfg, cos, sin, hooks=None):
    """One decoder block. hooks (dict) receives the input of every Linear, keyed by LINEARS names."""
    xn = rmsnorm(x, lw["input_layernorm.weight"], cfg.eps)
    h = x + attention(xn, lw, cfg, cos, sin, hooks)
    n = rmsnorm(h, lw["post_attention_layernorm.weight"], cfg.eps)
    return h + mlp(n, lw, hooks)


def embed(ids, weights, dtype=np.float64):
    return weights["model.embed_tokens.weight"][np.asarray(ids)].astype(dtype)


def lm_head(h, weights, cfg):
    hn = rmsnorm(h, weights["model.norm.weight"], cfg.eps)
    w = weights.get("lm_head.weight")
    if w is None:           # tied (tie_word_embeddings): lm_head is the embedding matrix
        w = weights["model.embed_tokens.weight"]
    return hn @ w.astype(h.dtype).T


def logits(ids, weights, cfg, dtype=np.float64):
    """ids: [B,T] (or [T]) int array -> logits [B,T,V] in dtype."""
    ids = np.asarray(ids)
    squeeze = ids.ndim == 1
    if squeeze:
        ids = ids[None]
    T = ids.shape[1]
    cos, sin = rope_cos_sin(cfg, T, dtype)
    x = embed(ids, weights, dtype)
    for i in range(cfg.n_layers):
        x = block_forward(x, block_weights(weights, i), cfg, cos, sin)
    out = lm_head(x, weights, cfg)
    return out[0] if squeeze else out


def nll_mean(lg, ids):
    """mean cross-entropy of lg[:, :-1] predicting ids[:, 1:] (float64 log-softmax)."""
    lg = lg[:, :-1].astype(np.float64)
    tgt = np.asarray(ids)[:, 1:]
    m = lg.max(-1, keepdims=True)
    lse = (m[..., 0] + np.log(np.exp(lg - m).sum(-1)))
    picked = np.take_along_axis(lg, tgt[..., None], -1)[..., 0]
    return lse - picked


def perplexity(tokens, weights, cfg, seqlen, dtype=np.float32, batch=4):
    """docs/reference/algorithms.md section 5: the token stream (tokenised once) cut into non-overlapping windows of
    seqlen (remainder dropped, no per-window BOS); ppl = exp(mean NLL over all shifted positions)."""
    tokens = np.asarray(tokens)
    nw = len(tokens) // seqlen
    if nw == 0:
        raise ValueError(f"{len(tokens)} tokens < seqlen {seqlen}")
    wins = tokens[: nw * seqlen].reshape(nw, seqlen)
    tot, cnt = 0.0, 0
    for b in range(0, nw, batch):
        ids = wins[b:b + batch]
        nll = nll_mean(logits(ids, weights, cfg, dtype), ids)
        tot += float(nll.sum())
        cnt += nll.size
    return math.exp(tot / cnt), nw * seqlen
