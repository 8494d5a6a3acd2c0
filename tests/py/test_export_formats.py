# SPDX-License-Identifier: MIT
"""qdist export checked independently of qdist's C code.

Every exported tensor is read with the `safetensors` package (raw reader for BF16) and unpacked by the
index formulas of docs/reference/formats.md section E, written here from the spec: the unpacked
(q, z, g) and scales must equal the fake-quant directory's qd_* tensors, and the dequantised weights
must equal the fake directory's .weight exactly (fp32). Names, dtypes and shapes follow sections B-D;
the quantization_config is interpreted the way the readers do (GPTQModel/vLLM `dynamic` regexes with
re.match, AWQ modules_to_not_convert substrings, compressed-tensors config_groups targets + ignore).
"""
import json
import os
import re

import numpy as np
import pytest

import export_fakegen as fg
from qdtest import STORIES, qdist


# ---------------------------------------------------------------- formats.md section E, from the spec
def code(word, i, b):
    """code i of word w = ((uint32)w >> (i*b)) & mask"""
    return (np.asarray(word).astype(np.int64) & 0xFFFFFFFF) >> (i * b) & ((1 << b) - 1)


def stream_get(words, i, b):
    """3-bit GPTQ (GPTQModel _pack_rows_3, 10|1|10|1|10): 32 values in 3 words, value j of a block at
    bit 3j of the 96-bit little-endian concatenation (values 10 and 21 straddle words)"""
    blk, j = divmod(i, 32)
    bit = 3 * j
    w, off = blk * 3 + bit // 32, bit % 32
    lo = (words[w].astype(np.int64) & 0xFFFFFFFF) >> off
    if off + 3 > 32:
        lo |= (words[w + 1].astype(np.int64) & 0xFFFFFFFF) << (32 - off)
    return lo & 7


def gptq_unpack(qweight, qzeros, g_idx, N, K, b, v1):
    q = np.zeros((N, K), np.int64)
    G = qzeros.shape[0]
    z = np.zeros((G, N), np.int64)
    if b == 3:
        for k in range(K):
            q[:, k] = stream_get(qweight, k, 3)
        for n in range(N):
            z[:, n] = stream_get(qzeros.T, n, 3)
    else:
        pf = 32 // b
        for k in range(K):
            q[:, k] = code(qweight[k // pf, :], k % pf, b)
        for n in range(N):
            z[:, n] = code(qzeros[:, n // pf], n % pf, b)
    if v1:
        z = z + 1
    return q, z, g_idx.astype(np.int64)


AWQ_REVERSE = [0, 4, 1, 5, 2, 6, 3, 7]


def awq_unpack(qweight, qzeros, N, K, gs):
    q = np.zeros((N, K), np.int64)
    G = qzeros.shape[0]
    z = np.zeros((G, N), np.int64)
    for n in range(N):
        q[n, :] = code(qweight[:, n // 8], AWQ_REVERSE[n % 8], 4)
        z[:, n] = code(qzeros[:, n // 8], AWQ_REVERSE[n % 8], 4)
    return q, z, (np.arange(K) // gs).astype(np.int64)


def ct_unpack(packed, zp, g_idx, N, K, b, gs):
    pf = 32 // b
    u = np.zeros((N, K), np.int64)
    for k in range(K):
        u[:, k] = code(packed[:, k // pf], k % pf, b)
    G = 1 if gs is None else (K + gs - 1) // gs
    if zp is None:
        z = np.full((G, N), 2 ** (b - 1), np.int64)
    else:
        z = np.zeros((G, N), np.int64)
        for n in range(N):
            z[:, n] = code(zp[n // pf, :], n % pf, b)
    g = g_idx.astype(np.int64) if g_idx is not None else (
        np.zeros(K, np.int64) if gs is None else np.arange(K) // gs)
    return u, z, g


def dequant(q, z, g, s_gn):
    """W[n][k] = (float)(q - z) * s, fp32"""
    return ((q - z[g].T).astype(np.float32) * s_gn[g].T.astype(np.float32)).astype(np.float32)


def test_spec_vectors():
    # GPTQ / compressed-tensors: q_s = -8..-1 at k = 0..7 -> 0x76543210
    w = np.array([0x76543210], np.uint32).view(np.int32)
    assert [int(code(w, k, 4)[0]) - 8 for k in range(8)] == list(range(-8, 0))
    # AWQ: codes 0..7 in columns 0..7 -> 0x75316420
    w = np.array([[0x75316420]], np.uint32).view(np.int32)
    assert [int(code(w[:, 0], AWQ_REVERSE[n], 4)[0]) for n in range(8)] == list(range(8))


# ---------------------------------------------------------------- helpers
def run_export(fake, out, fmt, *extra, ok=True):
    return qdist("export", "--input", fake, "--output", out, "--format", fmt, *extra, ok=ok, timeout=120)


def read_dir(d):
    """all tensors of a checkpoint dir: {name: (dtype, array)}, through the index when sharded"""
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    out = {}
    for f in files:
        t = fg.read_st(os.path.join(d, f))
        assert not set(t) & set(out), "tensor in two shards"
        out.update(t)
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        assert set(wm) == set(out)
        for name, f in wm.items():
            assert name in fg.read_st(os.path.join(d, f))
    return out


def fake_layers(fake):
    t = fg.read_st(os.path.join(fake, "model.safetensors"))
    report = json.load(open(os.path.join(fake, "qdist_report.json")))
    rep = report["modules"]
    sdt = report.get("settings", {}).get("scale_dtype", "F32")
    layers = {}
    for name in t:
        if name.endswith(".qd_codes"):
            p = name[:-len(".qd_codes")]
            # scales as the fake weights used them (the quantizer stores qd_scales unrounded)
            layers[p] = dict(codes=t[p + ".qd_codes"][1], scales=fg.round_scales(t[p + ".qd_scales"][1], sdt),
                             zeros=t[p + ".qd_zeros"][1],
                             g_idx=t[p + ".qd_g_idx"][1], weight=t[p + ".weight"][1], **rep[p])
    plain = {k: v for k, v in t.items() if not any(k.endswith(s) for s in (".qd_codes", ".qd_scales", ".qd_zeros",
                                                                               ".qd_g_idx"))
             and not (k.endswith(".weight") and k[:-7] in layers)}
    return layers, plain


def packable(fmt, L):
    N, K = L["codes"].shape
    b, gs = L["bits"], L["group_size"]
    if fmt in ("gptq", "gptq_v2"):
        return (K * b) % 32 == 0 and (N * b) % 32 == 0
    if fmt == "awq":
        return N % 8 == 0 and gs > 0 and K % gs == 0
    return True


def model_dtype(cfg):
    return {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[cfg.get("torch_dtype", "float32")]


def gptq_module_scheme(qc, name):
    """GPTQModel / vLLM semantics of "dynamic": first matching key wins; '-:' = not quantized"""
    for key, val in qc.get("dynamic", {}).items():
        neg = key.startswith("-:")
        pat = key[2:] if key[:2] in ("-:", "+:") else key
        if re.match(pat, name):
            if neg:
                return None
            return dict(bits=val.get("bits", qc["bits"]), group_size=val.get("group_size", qc["group_size"]),
                        sym=val.get("sym", qc["sym"]), desc_act=val.get("desc_act", qc["desc_act"]))
    if name == "lm_head" and not qc.get("lm_head"):
        return None
    return dict(bits=qc["bits"], group_size=qc["group_size"], sym=qc["sym"], desc_act=qc["desc_act"])


def ct_module_scheme(qc, name):
    """compressed-tensors: ignored names/regexes -> None, else the config group whose targets match
    (exact name or re: regex before the class name "Linear")"""
    def match(t):
        return re.match(t[3:], name) if t.startswith("re:") else t == name
    if any(match(t) for t in qc["ignore"]):
        return None
    hits = [g for g in qc["config_groups"].values() if any(t != "Linear" and match(t) for t in g["targets"])]
    if not hits:
        hits = [g for g in qc["config_groups"].values() if "Linear" in g["targets"]]
    assert len(hits) == 1, (name, hits)
    return hits[0]["weights"]


# ---------------------------------------------------------------- the independent check of one export
def check_export(fake, out, fmt, naive=False, compare_report=True):
    layers, plain = fake_layers(fake)
    cfg_src = json.load(open(os.path.join(fake, "config.json")))
    mdt = model_dtype(cfg_src)
    exp = read_dir(out)
    cfg = json.load(open(os.path.join(out, "config.json")))
    qc = cfg["quantization_config"]
    for k, v in cfg_src.items():
        if k not in ("quantization_config", "tie_word_embeddings"):
            assert cfg[k] == v, k
    for fn in os.listdir(fake):
        if fn.endswith(".safetensors") or fn == "config.json" or (fn == "qdist_report.json" and not compare_report):
            continue
        assert open(os.path.join(out, fn), "rb").read() == open(os.path.join(fake, fn), "rb").read(), fn
    seen = set()
    linears = fg.linear_prefixes({k: v for k, (_, v) in plain.items()}) + sorted(layers)
    for p in sorted(set(linears)):
        L = layers.get(p)
        conv = L is not None and packable(fmt, L) and (p != "lm_head" or qc.get("lm_head", False) or
                                                       (fmt == "compressed-tensors" and "lm_head" not in qc["ignore"]))
        # the config must say the same as the tensors
        if fmt in ("gptq", "gptq_v2"):
            sch = gptq_module_scheme(qc, p)
            assert (sch is not None) == conv, p
            if "modules_in_block_to_quantize" in qc and p.startswith("model.layers."):
                # transformers/optimum: the quantized modules of every block, by name inside the block
                inside = p.split(".", 3)[3]
                assert (inside in sum(qc["modules_in_block_to_quantize"], [])) == conv, p
        elif fmt == "awq":
            assert any(m in p for m in (qc.get("modules_to_not_convert") or [])) == (not conv), p
        else:
            sch = ct_module_scheme(qc, p)
            assert (sch is not None) == conv, p
        if not conv:
            if L is not None:  # written dequantised in the model dtype
                dt, w = exp[p + ".weight"]
                assert dt == mdt, p
                want = L["weight"] if mdt == "F32" else fg.bf16_round(L["weight"]) if mdt == "BF16" else \
                    fg.f16_round(L["weight"])
                assert np.array_equal(w, want), p
                seen.add(p + ".weight")
            continue
        N, K = L["codes"].shape
        b, gs, sym = L["bits"], L["group_size"], L["sym"]
        G = L["scales"].shape[0]
        nonseq = not np.array_equal(L["g_idx"], np.arange(K) // (K if gs == -1 else gs))

        def get(suffix, dtype, shape):
            name = p + suffix
            assert name in exp, name
            dt, a = exp[name]
            assert dt == dtype and list(a.shape) == list(shape), (name, dt, a.shape, dtype, shape)
            seen.add(name)
            return a
        if fmt in ("gptq", "gptq_v2"):
            assert sch["bits"] == b and sch["group_size"] == gs and sch["sym"] == sym and sch["desc_act"] == nonseq, p
            qw = get(".qweight", "I32", (K * b // 32, N))
            qz = get(".qzeros", "I32", (G, N * b // 32))
            sc = get(".scales", "F16", (G, N)).astype(np.float32)
            gi = get(".g_idx", "I32", (K,))
            q, z, g = gptq_unpack(qw, qz, gi, N, K, b, fmt == "gptq")
        elif fmt == "awq":
            assert qc["bits"] == 4 and qc["group_size"] == gs and qc["zero_point"] and qc["version"] == "gemm"
            qw = get(".qweight", "I32", (K, N // 8))
            qz = get(".qzeros", "I32", (G, N // 8))
            sc = get(".scales", "F16", (G, N)).astype(np.float32)
            q, z, g = awq_unpack(qw, qz, N, K, gs)
        else:
            assert sch["num_bits"] == b and sch["symmetric"] == sym
            assert sch["strategy"] == ("channel" if gs == -1 else "group")
            assert sch["group_size"] == (None if gs == -1 else gs)
            assert sch["actorder"] == ("group" if nonseq else ("weight" if json.load(open(os.path.join(
                fake, "qdist_report.json")))["settings"]["act_order"] else None))
            sc = get(".weight_scale", mdt, (N, G)).T.astype(np.float32)
            gi = get(".weight_g_idx", "I32", (K,)) if nonseq else None
            assert (p + ".weight_g_idx" in exp) == nonseq
            if naive:
                assert qc["format"] == "naive-quantized"
                wq = get(".weight", "I8", (N, K)).astype(np.int64)
                half = 2 ** (b - 1)
                q = wq + half
                z = np.full((G, N), half, np.int64) if sym else get(".weight_zero_point", "I8", (N, G)).T.astype(
                    np.int64) + half
                g = gi.astype(np.int64) if gi is not None else np.arange(K) // (K if gs == -1 else gs)
            else:
                assert qc["format"] == "pack-quantized"
                pf = 32 // b
                wp = get(".weight_packed", "I32", (N, -(-K // pf)))
                assert list(get(".weight_shape", "I64", (2,))) == [N, K]
                zp = None if sym else get(".weight_zero_point", "I32", (-(-N // pf), G))
                assert (p + ".weight_zero_point" in exp) == (not sym)
                q, z, g = ct_unpack(wp, zp, gi, N, K, b, None if gs == -1 else gs)
        assert np.array_equal(q, L["codes"].astype(np.int64)), p
        assert np.array_equal(z, L["zeros"].astype(np.int64)), p
        assert np.array_equal(g, L["g_idx"].astype(np.int64)), p
        assert np.array_equal(sc, L["scales"]), p
        assert np.array_equal(dequant(q, z, g, sc), L["weight"]), p
        if p + ".bias" in plain and fmt != "compressed-tensors":
            assert np.array_equal(get(".bias", "F16", (N,)), fg.f16_round(plain[p + ".bias"][1])), p
    for name, (dt, a) in plain.items():
        if name in seen:
            continue
        assert name in exp, name
        assert exp[name][0] == dt and np.array_equal(exp[name][1], a), name
        seen.add(name)
    assert set(exp) == seen, set(exp) - seen
    if fmt in ("gptq", "gptq_v2"):
        assert json.load(open(os.path.join(out, "quantize_config.json"))) == qc
        assert qc["quant_method"] == "gptq" and qc["checkpoint_format"] == fmt
    elif fmt == "awq":
        assert qc["quant_method"] == "awq"
    else:
        assert qc["quant_method"] == "compressed-tensors" and qc["quantization_status"] == "compressed"
    return qc


# ---------------------------------------------------------------- cases
DOWN_CHANNEL = {"mlp.down_proj": {"group_size": -1}}

CASES = [
    # stories260K: K/N of 172 in the MLP -> GPTQ/AWQ write those unquantized (declared in the config)
    ("s260-w4-sym", "stories", dict(bits=4, group_size=32, sym=True, overrides=DOWN_CHANNEL),
     ["gptq", "gptq_v2", "compressed-tensors"]),
    ("s260-w4-asym-act", "stories", dict(bits=4, group_size=32, sym=False, act_order=True, clamp_z1=True,
                                         overrides=DOWN_CHANNEL), ["gptq", "gptq_v2"]),
    ("s260-awq", "stories", dict(bits=4, group_size=32, sym=False, overrides={"mlp.down_proj": None}),
     ["awq", "compressed-tensors"]),
    ("t128-w3-act", "t128", dict(bits=3, group_size=32, sym=False, act_order=True, clamp_z1=True), ["gptq"]),
    ("t128-w8-chan", "t128", dict(bits=8, group_size=-1, sym=True), ["gptq", "compressed-tensors", "ct-naive"]),
    ("t128-w8-asym", "t128", dict(bits=8, group_size=64, sym=False, act_order=True), ["gptq_v2"]),
    ("t128-w8-asym-static", "t128", dict(bits=8, group_size=64, sym=False, act_order=True, static_groups=True),
     ["gptq", "ct-naive", "compressed-tensors"]),
    ("t128-w2", "t128", dict(bits=2, group_size=64, sym=False), ["gptq_v2", "compressed-tensors"]),
    ("t128-mixed", "t128", dict(bits=4, group_size=32, sym=False, overrides={
        "self_attn.q_proj": {"bits": 8}, "mlp.down_proj": {"group_size": 64}, "self_attn.v_proj": None}),
     ["gptq_v2", "compressed-tensors"]),
    ("t128-lmhead", "t128", dict(bits=4, group_size=64, sym=True, lm_head=True), ["gptq", "compressed-tensors"]),
    ("t128b-awq", "t128b", dict(bits=4, group_size=64, sym=False), ["awq", "gptq_v2"]),
    ("t128bias", "t128bias", dict(bits=4, group_size=32, sym=False, clamp_z1=True),
     ["gptq", "awq", "compressed-tensors"]),
    ("t128b-ct", "t128b", dict(bits=4, group_size=64, sym=False, act_order=True, static_groups=True,
                               scale_round=fg.bf16_round),
     ["compressed-tensors"]),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"stories": STORIES,
            "t128": fg.make_tiny128(STORIES, str(d / "t128")),
            "t128b": fg.make_tiny128(STORIES, str(d / "t128b"), dtype=fg.BF16),
            "t128bias": fg.make_tiny128(STORIES, str(d / "t128bias"), bias=True)}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_export_independent(case, models, tmp_path):
    name, model, scheme, formats = case
    fake = str(tmp_path / "fake")
    fg.make_fake(models[model], fake, **scheme)
    for fmt in formats:
        out = str(tmp_path / ("out-" + fmt))
        # --verify: qdist reads its own export back through the dequantise-on-load reader (for eval)
        extra = ["--verify"] + (["--lm-head"] if scheme.get("lm_head") else [])
        if fmt == "ct-naive":
            r = run_export(fake, out, "compressed-tensors", "--ct-format", "naive-quantized", *extra)
            check_export(fake, out, "compressed-tensors", naive=True)
        else:
            r = run_export(fake, out, fmt, *extra)
            check_export(fake, out, fmt)
        assert "not exactly representable" not in r.stderr, r.stderr
        assert "read back bit-exact" in r.stderr, r.stderr


def test_sharding_and_overwrite(models, tmp_path):
    fake = str(tmp_path / "fake")
    fg.make_fake(models["t128"], fake, bits=4, group_size=32, sym=True)
    out = str(tmp_path / "out")
    run_export(fake, out, "gptq", "--max-shard-size", "100KB")
    files = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    assert len(files) > 1 and files[0] == "model-00001-of-%05d.safetensors" % len(files)
    check_export(fake, out, "gptq")
    # a non-empty output is refused unless --overwrite
    r = run_export(fake, out, "compressed-tensors", ok=False)
    assert r.returncode != 0 and "--overwrite" in r.stderr
    run_export(fake, out, "compressed-tensors", "--overwrite")
    assert not os.path.exists(os.path.join(out, "model-00001-of-%05d.safetensors" % len(files)))
    check_export(fake, out, "compressed-tensors")


REFUSALS = [
    # (scheme, format, words expected in the one-line message)
    (dict(bits=4, group_size=32, sym=True), "awq", ["zero point", "gptq"]),
    (dict(bits=3, group_size=32, sym=False, clamp_z1=True), "awq", ["4-bit", "gptq"]),
    (dict(bits=4, group_size=-1, sym=False), "awq", ["group size", "gptq"]),
    (dict(bits=4, group_size=32, sym=False, act_order=True), "awq", ["act-order", "gptq"]),
    (dict(bits=3, group_size=32, sym=True), "compressed-tensors", ["3-bit", "gptq"]),
    (dict(bits=4, group_size=32, sym=True, act_order=True), "compressed-tensors", ["act-order", "gptq"]),
    (dict(bits=4, group_size=32, sym=True), "gptq", ["--lm-head"]),
]


@pytest.mark.parametrize("i", range(len(REFUSALS)))
def test_refusals(i, models, tmp_path):
    scheme, fmt, words = REFUSALS[i]
    fake = str(tmp_path / "fake")
    fg.make_fake(models["t128"], fake, **scheme)
    out = str(tmp_path / "out")
    extra = ["--lm-head"] if words == ["--lm-head"] else []
    r = run_export(fake, out, fmt, *extra, ok=False)
    assert r.returncode in (1, 2), r.stderr
    err = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(err) == 1, r.stderr
    for w in words:
        assert w in err[0], err[0]
    assert not os.path.exists(out)
    assert not [f for f in os.listdir(tmp_path) if "qdist-tmp" in f]


def test_v1_zero_point_zero_refused(models, tmp_path):
    """asymmetric GPTQ v1 cannot store z = 0: refused naming gptq_v2, which stores it"""
    fake = str(tmp_path / "fake")
    fg.make_fake(models["t128"], fake, bits=4, group_size=32, sym=False)
    t = fg.read_st(os.path.join(fake, "model.safetensors"))
    name = "model.layers.1.mlp.up_proj.qd_zeros"
    z = t[name][1].copy()
    z[0, 5] = 0
    t[name] = ("I32", z)
    pre = name[:-len(".qd_zeros")]
    t[pre + ".weight"] = ("F32", fg.dequant(t[pre + ".qd_codes"][1], t[pre + ".qd_scales"][1], z, t[pre + ".qd_g_idx"][1]))
    fg.write_st(os.path.join(fake, "model.safetensors"), t)
    out = str(tmp_path / "out")
    r = run_export(fake, out, "gptq", ok=False)
    assert r.returncode == 1 and "gptq_v2" in r.stderr and "model.layers.1.mlp.up_proj" in r.stderr
    assert not os.path.exists(out)
    run_export(fake, out, "gptq_v2")
    check_export(fake, out, "gptq_v2")
