# SPDX-License-Identifier: MIT
"""The W8A8 schemes (issue 20 items 1-2): `qdist quantize --scheme fp8-dynamic|fp8-block|w8a8-int8`
written as compressed-tensors float-quantized / int-quantized checkpoints, checked with the libraries
users run (CPU):
- the quantization_config group equals llm-compressor's preset (FP8_DYNAMIC, FP8_BLOCK, W8A8) as the
  compressed-tensors library defines it, with "ignore": ["lm_head"];
- compressed-tensors' own compressor decompresses every Linear to qdist's dequantisation (the fake
  directory's .weight of the same run) bit for bit: e4m3 * scale and int8 * scale are exact in fp32, so
  the library's product in the scale dtype is that weight rounded once to the scale dtype;
- transformers loads the export (dtype float32) and runs it: its compressed-tensors forward quantizes
  each Linear's input as the config declares (dynamic, per token or per group of 128), so its logits
  must equal those of the source model holding the fake-quant weights with this test's own
  simulation of that activation quantization (symmetric, scale = amax / (range / 2) as
  compressed-tensors' calculate_qparams: 448 for e4m3, 127.5 for int8); it also generates;
- `qdist eval` of the export equals `qdist eval` of the fake directory (the fake-quant ppl).
Bad inputs are one-line usage errors (exit 2).
"""
import json
import os

import numpy as np
import pytest
import torch
import transformers
from compressed_tensors.compressors.naive_quantized.base import (
    FloatQuantizationCompressor, IntQuantizationCompressor)
from compressed_tensors.quantization import preset_name_to_scheme

import export_fakegen as fg
import qdtest as qt
from qdtest import IDS, PYCODE, STORIES, WIKI, qdist, tensors
from qdtest import checkpoint_bytes as files_bytes

CALIB = EVAL = WIKI

PRESET = {"fp8-dynamic": "FP8_DYNAMIC", "fp8-block": "FP8_BLOCK", "w8a8-int8": "W8A8"}
FORMAT = {"fp8-dynamic": "float-quantized", "fp8-block": "float-quantized", "w8a8-int8": "int-quantized"}

def quantize(model, out, fmt, *args):
    cfg = json.load(open(os.path.join(model, "config.json")))
    dt = cfg.get("torch_dtype", cfg.get("dtype"))
    # the fake directory rounds scales as the compressed-tensors export stores them: the model dtype
    sd = ["--scale-dtype", "bf16" if dt == "bfloat16" else "f32"] if fmt == "fake" else []
    qdist("quantize", "--model", model, "--output", out, "--format", fmt, "--backend", "cpu", "--quiet",
          "--progress", "none", *sd, *args)


def eval_ppl(d):
    return qt.eval_ppl(d, EVAL, 128, 8)


def check_config(out, schemes):
    """the groups of the export against the presets; schemes: {module regex or None: scheme}"""
    q, groups = qt.ct_quant_config(out)
    for sc in set(schemes.values()):
        if sc not in PRESET:
            continue
        want = preset_name_to_scheme(PRESET[sc], ["Linear"]).model_dump(mode="json")
        match = [g for g in groups if g["format"] == FORMAT[sc] and
                 (g["weights"]["strategy"] == "block") == (sc == "fp8-block")]
        assert len(match) == 1, (sc, groups)
        for part in ("weights", "input_activations"):
            for k, v in want[part].items():
                assert match[0][part][k] == v, (sc, part, k, match[0][part][k], v)
        assert match[0]["output_activations"] is None
    return q


def check_decompress(out, fake, q, scale_round):
    t, f = tensors(out), tensors(fake)
    n = 0
    for name in t:
        if not name.endswith(".weight_scale") or name[:-13] + ".weight_packed" in t:
            continue
        p = name[:-13]
        w, s = t[p + ".weight"], t[name]
        fmt = "float-quantized" if w.dtype == torch.float8_e4m3fn else "int-quantized"
        sch = qt.ct_scheme_of(q, fmt, p)
        comp = FloatQuantizationCompressor if fmt == "float-quantized" else IntQuantizationCompressor
        N, K = w.shape
        if sch.weights.strategy == "block":
            assert tuple(s.shape) == ((N + 127) // 128, (K + 127) // 128), p
        else:
            assert tuple(s.shape) == (N, 1), p
        got = comp.decompress({"weight": w, "weight_scale": s}, sch)["weight"].float().numpy()
        want = scale_round(f[p + ".weight"].float().numpy())
        assert np.array_equal(got, want), (p, float(np.abs(got - want).max()))
        n += 1
    assert n > 0
    return n


def act_quant(x, scheme):
    """dynamic symmetric activation fake-quantization: per token, or per group of 128 for fp8-block"""
    shape = x.shape
    if scheme == "fp8-block":
        x = x.reshape(*shape[:-1], shape[-1] // 128, 128)
    amax = x.abs().amax(-1, keepdim=True)
    if scheme == "w8a8-int8":
        s = amax / 127.5
        q = torch.clamp(torch.round(x / s), -128, 127) * s
    else:
        s = amax / 448.0
        q = torch.clamp(x / s, -448, 448).to(torch.float8_e4m3fn).float() * s
    return torch.where(amax > 0, q, x).reshape(shape)


def reference_logits(src, fake, scale_round):
    m = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    f = tensors(fake)
    rep = json.load(open(os.path.join(fake, "qdist_report.json")))["modules"]
    with torch.no_grad():
        for name, mod in m.named_modules():
            if name + ".qd_codes" in f:
                mod.weight.copy_(torch.from_numpy(scale_round(f[name + ".weight"].float().numpy())))
                sc = rep[name].get("scheme")
                if sc:
                    mod.register_forward_pre_hook(lambda _m, a, sc=sc: (act_quant(a[0], sc),))
        return m(torch.tensor([IDS])).logits[0].numpy()


def check_transformers(src, out, fake, tol, scale_round):
    ref = reference_logits(src, fake, scale_round)
    m = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    return qt.logits_match_and_generate(m, ref, tol)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"stories": STORIES, "pycode": PYCODE,
            "t128": fg.make_tiny128(STORIES, str(d / "t128")),
            "t128b": fg.make_tiny128(STORIES, str(d / "t128b"), dtype=fg.BF16)}


CASES = [
    # name, model, scheme, extra flags, transformers tolerance
    ("stories-fp8-dynamic", "stories", "fp8-dynamic", [], 1e-4),
    ("t128b-fp8-dynamic-mse", "t128b", "fp8-dynamic", ["--mse"], 1e-4),
    ("t128-fp8-block", "t128", "fp8-block", [], 1e-4),
    ("t128b-fp8-dynamic-gptq", "t128b", "fp8-dynamic", ["--method", "gptq", "--calib", CALIB, "--nsamples", "8",
                                                         "--seqlen", "128"], 1e-4),
    ("pycode-fp8-block", "pycode", "fp8-block", [], 1e-4),
    ("stories-w8a8-rtn", "stories", "w8a8-int8", ["--method", "rtn"], 1e-4),
    ("t128b-w8a8-gptq", "t128b", "w8a8-int8", ["--method", "gptq", "--calib", CALIB, "--nsamples", "8",
                                                "--seqlen", "128"], 1e-4),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_scheme_export(case, models, tmp_path):
    name, model, scheme, extra, tol = case
    src = models[model]
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    quantize(src, fake, "fake", "--scheme", scheme, *extra)
    quantize(src, out, "compressed-tensors", "--scheme", scheme, *extra)
    q = check_config(out, {None: scheme})
    assert q["format"] == FORMAT[scheme]
    dt = json.load(open(os.path.join(src, "config.json")))
    bf16 = dt.get("torch_dtype", dt.get("dtype")) == "bfloat16"
    rnd = fg.bf16_round if bf16 else (lambda x: x)
    check_decompress(out, fake, q, rnd)
    rep = json.load(open(os.path.join(out, "qdist_report.json")))
    assert rep["settings"]["scheme"] == scheme
    assert all(m["scheme"] == scheme and m["bits"] == 8 and m["sym"] for m in rep["modules"].values())
    # loaded with dtype float32, transformers holds the bf16 scales in fp32: e4m3 * s is then exact
    check_transformers(src, out, fake, tol, lambda x: x)
    assert eval_ppl(out) == eval_ppl(fake)
    # the fake directory exported afterwards gives the same checkpoint tensors
    exp = str(tmp_path / "exp")
    qdist("export", "--input", fake, "--output", exp, "--format", "compressed-tensors", "--verify")
    a, b = tensors(out), tensors(exp)
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("scheme", ["w8a8-int8", "fp8-dynamic"])
def test_gptq_feeds_back_error(scheme, models, tmp_path):
    """GPTQ on 8-bit per-channel targets (w8a8-int8: the integer codes W8A16 uses; fp8-dynamic: E4M3
    codes, CPU backend): the same per-row scales as RTN (int: min-max of the row, zero 128; fp8:
    amax / 448 rounded to the scale dtype, zero 0), but codes moved by the error feedback"""
    src = models["t128"]
    f = {}
    for m in ("rtn", "gptq"):
        out = str(tmp_path / m)
        quantize(src, out, "fake", "--scheme", scheme, "--method", m, "--calib", CALIB, "--nsamples", "8",
                 "--seqlen", "128")
        f[m] = tensors(out)
        rep = json.load(open(os.path.join(out, "qdist_report.json")))
        assert rep["settings"]["method"] == m and rep["settings"]["scheme"] == scheme
    names = [k[:-len(".qd_codes")] for k in f["rtn"] if k.endswith(".qd_codes")]
    assert len(names) == 14
    moved = 0
    for p in names:
        for m in ("rtn", "gptq"):
            assert tuple(f[m][p + ".qd_zeros"].shape) == (1, f[m][p + ".qd_codes"].shape[0])
            assert bool((f[m][p + ".qd_zeros"] == (128 if scheme == "w8a8-int8" else 0)).all())
        assert torch.equal(f["rtn"][p + ".qd_scales"], f["gptq"][p + ".qd_scales"]), p
        moved += int((f["rtn"][p + ".qd_codes"] != f["gptq"][p + ".qd_codes"]).sum())
    assert moved > 1000


def test_recipe_mixes_schemes(models, tmp_path):
    """per-module schemes from a recipe: fp8-block run-wide, fp8-dynamic for down_proj, W4 integer
    groups for the attention, lm_head left alone; one group per scheme, "mixed-precision" overall"""
    src = models["t128"]
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"method": "rtn", "scheme": "fp8-block", "overrides": [
        {"match": "mlp\\.down_proj$", "scheme": "fp8-dynamic"},
        {"match": "self_attn\\.", "scheme": "wna16", "bits": 4, "group_size": 32}]}))
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    quantize(src, fake, "fake", "--recipe", str(recipe))
    quantize(src, out, "compressed-tensors", "--recipe", str(recipe))
    q = check_config(out, {"a": "fp8-block", "b": "fp8-dynamic"})
    assert q["format"] == "mixed-precision" and len(q["config_groups"]) == 3
    t = tensors(out)
    assert t["model.layers.0.mlp.up_proj.weight"].dtype == torch.float8_e4m3fn
    assert tuple(t["model.layers.0.mlp.down_proj.weight_scale"].shape) == (128, 1)
    assert "model.layers.0.self_attn.q_proj.weight_packed" in t
    assert "lm_head.weight" in t and t["lm_head.weight"].dtype == torch.float32
    check_decompress(out, fake, q, lambda x: x)
    check_transformers(src, out, fake, 1e-4, lambda x: x)
    assert eval_ppl(out) == eval_ppl(fake)


def test_recipe_mixes_fp8_layouts(models, tmp_path):
    """every group FP8 but in two layouts (fp8-dynamic per channel, fp8-block for down_proj): the
    checkpoint reads as an FP8 source whose Linears each take their own group's layout (the model check
    once applied down_proj's 128 x 128 block to every Linear and refused q_proj's per-row scale); it
    decompresses, runs in transformers, evaluates to the fake-quant ppl, and quantizes as a source"""
    src = models["t128"]
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"method": "rtn", "scheme": "fp8-dynamic", "overrides": [
        {"match": "mlp\\.down_proj$", "scheme": "fp8-block"}]}))
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    quantize(src, fake, "fake", "--recipe", str(recipe))
    quantize(src, out, "compressed-tensors", "--recipe", str(recipe))
    q = check_config(out, {"a": "fp8-dynamic", "b": "fp8-block"})
    assert len(q["config_groups"]) == 2
    t = tensors(out)
    assert tuple(t["model.layers.0.self_attn.q_proj.weight_scale"].shape) == (t["model.layers.0.self_attn.q_proj.weight"].shape[0], 1)
    assert t["model.layers.0.mlp.down_proj.weight_scale"].shape[1] == t["model.layers.0.mlp.down_proj.weight"].shape[1] // 128
    check_decompress(out, fake, q, lambda x: x)
    check_transformers(src, out, fake, 1e-4, lambda x: x)
    assert eval_ppl(out) == eval_ppl(fake)
    again = str(tmp_path / "again")
    quantize(out, again, "compressed-tensors", "--method", "rtn", "--bits", "4", "--group-size", "32")
    assert "model.layers.0.mlp.down_proj.weight_packed" in tensors(again)

BAD = [
    (["--scheme", "fp9"], "--scheme"),
    (["--scheme", "fp8-block", "--method", "awq"], "round-to-nearest"),
    (["--scheme", "fp8-dynamic", "--method", "awq"], "round-to-nearest"),
    (["--scheme", "fp8-dynamic", "--act-order"], "--act-order"),
    (["--scheme", "fp8-dynamic", "--format", "gptq"], "compressed-tensors"),
    (["--scheme", "fp8-dynamic", "--format", "awq"], "compressed-tensors"),
    (["--scheme", "w8a8-int8", "--bits", "4"], "--bits"),
    (["--scheme", "w8a8-int8", "--method", "awq"], "awq"),
    (["--scheme", "fp8-block", "--group-size", "64"], "--group-size"),
    (["--scheme", "fp8-block"], "divisible by 128"),  # stories: 64 input features
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_scheme_flags(args, needle, tmp_path):
    out = str(tmp_path / "out")
    r = qdist("quantize", "--model", STORIES, "--output", out, "--backend", "cpu", *args, ok=False)
    qt.one_line_error(r, 2, needle)
    assert not os.path.exists(out)


BAD_RECIPES = [
    ({"scheme": "int4"}, "\"scheme\""),
    ({"scheme": "fp8-dynamic", "bits": 4}, "remove \"bits\""),
    ({"overrides": [{"match": "mlp", "scheme": "w8a8-int8", "group_size": 32}]}, "remove \"group_size\""),
    ({"method": "awq", "scheme": "fp8-block"}, "remove \"method\""),
    ({"scheme": "fp8-dynamic", "overrides": [{"match": "mlp", "bits": 4}]}, "scheme fp8-dynamic with 4 bits"),
]


@pytest.mark.parametrize("recipe,needle", BAD_RECIPES, ids=[json.dumps(b[0]) for b in BAD_RECIPES])
def test_bad_scheme_recipes(recipe, needle, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe))
    out = str(tmp_path / "out")
    r = qdist("quantize", "--model", STORIES, "--output", out, "--backend", "cpu", "--method", "rtn",
              "--format", "compressed-tensors", "--recipe", str(path), ok=False)
    qt.one_line_error(r, 2, needle)


def test_inspect_vllm_rules_for_fp8_block(models, tmp_path):
    """fp8-block in vLLM needs whole 128 x 128 blocks per shard and per merged q/k/v member: t128's k_proj
    (64 rows, followed by v_proj in the merged qkv) does not load at tp 1; at tp 2 every column-parallel
    shard below 128 rows fails too. fp8-dynamic has no such rule."""
    out = str(tmp_path / "blk")
    quantize(models["t128"], out, "compressed-tensors", "--scheme", "fp8-block")
    r = qdist("inspect", out, "--vllm-tp", "1", ok=False)
    bad = [x for x in r.stdout.splitlines() if "does not load" in x]
    assert sorted(x.split(":")[0] for x in bad) == ["model.layers.0.self_attn.k_proj",
                                                    "model.layers.1.self_attn.k_proj"], r.stdout
    r = qdist("inspect", out, "--vllm-tp", "2", ok=False)
    assert "8 do not load" in r.stdout, r.stdout
    dyn = str(tmp_path / "dyn")
    quantize(models["t128"], dyn, "compressed-tensors", "--scheme", "fp8-dynamic")
    r = qdist("inspect", dyn, "--vllm-tp", "2", ok=False)
    assert "14 Linear modules" not in r.stdout and "0 miss Marlin, 0 do not load" in r.stdout, r.stdout


def test_killed_run_resumes_identical(tmp_path):
    """the staging keeps each module's scheme: a run killed after 4 of pycode-16m's 8 blocks resumes to
    the bytes of an uninterrupted run (GPTQ w8a8-int8 attention, RTN fp8-block gate/up and fp8-dynamic
    down); a resume with another scheme is refused by the fingerprint"""
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"method": "gptq", "scheme": "w8a8-int8", "overrides": [
        {"match": "mlp\\.down_proj$", "scheme": "fp8-dynamic"}, {"match": "mlp\\.(gate|up)_proj$", "scheme": "fp8-block"}]}))
    # GPTQ's calibration chain: the resumed run replays the staged blocks (fp8 ones included) to rebuild
    # the activations of the first missing block
    args = ["quantize", "--model", PYCODE, "--backend", "cpu", "--quiet", "--progress", "none", "--recipe", str(recipe),
            "--calib", CALIB, "--nsamples", "4", "--seqlen", "128", "--format", "compressed-tensors"]
    ref, out = str(tmp_path / "ref"), str(tmp_path / "out")
    qdist(*args, "--output", ref)
    env = dict(os.environ, QD_INJECT_KILL="0:4")
    r = qdist(*args, "--output", out, ok=False, env=env)
    assert r.returncode != 0 and not os.path.exists(out)
    bad = qdist(*args, "--output", out, "--resume", "--scheme", "wna16", ok=False)
    assert bad.returncode == 1 and "fingerprint field 'scheme' differs" in bad.stderr and not os.path.exists(out), \
        bad.stderr
    qdist(*args, "--output", out, "--resume")
    assert files_bytes(out) == files_bytes(ref)
    q = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    assert q["format"] == "mixed-precision" and len(q["config_groups"]) == 3


@pytest.mark.parametrize("layout", ["data", "pipeline"])
def test_two_ranks_equal_one(layout, tmp_path):
    """RTN fp8 and GPTQ w8a8-int8 modules (a recipe) give the same checkpoint bytes on 2 ranks as on one
    (exact numerics; the data layout reduces the Hessians over the ranks, the pipeline layout ships
    block boundaries)"""
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"method": "gptq", "scheme": "w8a8-int8", "overrides": [
        {"match": "mlp\\.", "scheme": "fp8-block"}]}))
    args = ["quantize", "--model", PYCODE, "--backend", "cpu", "--quiet", "--progress", "none", "--recipe", str(recipe),
            "--calib", CALIB, "--nsamples", "4", "--seqlen", "128", "--numerics", "exact", "--parallel", layout]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    qdist(*args, "--output", one)
    qt.mpirun(2, *args, "--output", two)
    assert files_bytes(one) == files_bytes(two)
    t = tensors(one)
    assert t["model.layers.0.mlp.up_proj.weight"].dtype == torch.float8_e4m3fn
    assert t["model.layers.0.self_attn.q_proj.weight"].dtype == torch.int8


def test_scheme_override_in_awq_run_refused(tmp_path):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"method": "awq", "group_size": 32,
                                  "overrides": [{"match": "mlp", "scheme": "fp8-dynamic"}]}))
    out = str(tmp_path / "out")
    r = qdist("quantize", "--model", STORIES, "--output", out, "--backend", "cpu", "--format", "compressed-tensors",
              "--recipe", str(recipe), ok=False)
    qt.one_line_error(r, 2, "awq run", "overrides[0]")
    assert not os.path.exists(out)


STORED = [
    # name, model, fake-directory flags (the scale dtype the export would store), stored dtype
    ("t128b-w8a8-rtn", "t128b", ["--scheme", "w8a8-int8", "--method", "rtn", "--scale-dtype", "bf16"], "bf16"),
    ("t128b-w8a8-gptq", "t128b", ["--scheme", "w8a8-int8", "--method", "gptq", "--scale-dtype", "bf16", "--calib", CALIB,
                                  "--nsamples", "8", "--seqlen", "128"], "bf16"),
    ("t128-w4-rtn-asym", "t128", ["--bits", "4", "--group-size", "32", "--asym", "--method", "rtn"], "f16"),
    ("t128-w4-gptq-sym", "t128", ["--bits", "4", "--group-size", "32", "--method", "gptq", "--calib", CALIB,
                                  "--nsamples", "8", "--seqlen", "128"], "f16"),
]


def _stored(x, dt):
    """x (float32 array) as F16 / BF16 holds it, back in float32 (numpy's float16 cast; BF16 by the bits)"""
    if dt == "f16":
        return x.astype(np.float16).astype(np.float32)
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("case", STORED, ids=[c[0] for c in STORED])
def test_codes_chosen_against_the_stored_scale(case, models, tmp_path):
    """The integer quantizer rounds each scale to the dtype the checkpoint stores it in BEFORE it picks
    the zero and the codes: the fake directory's .qd_scales are already values of that dtype, stored
    scale x (code - zero) is qdist's own fake-quant .weight bit for bit, and (RTN) every code is
    round(w / stored scale) + zero of the source weight, computed here in fp32"""
    name, model, flags, dt = case
    src, fake = models[model], str(tmp_path / "fake")
    qdist("quantize", "--model", src, "--output", fake, "--format", "fake", "--backend", "cpu", "--quiet",
          "--progress", "none", *flags)
    ft, w0 = tensors(fake), tensors(src)
    f = {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in ft.items()}
    rep = json.load(open(os.path.join(fake, "qdist_report.json")))
    assert rep["settings"]["scale_dtype"] == dt.upper()
    names = [k[:-len(".qd_codes")] for k in f if k.endswith(".qd_codes")]
    assert len(names) == 14
    rtn = "rtn" in flags
    for p in names:
        s, z, c = f[p + ".qd_scales"], f[p + ".qd_zeros"].astype(np.int64), f[p + ".qd_codes"].astype(np.int64)
        G, N = s.shape
        K = c.shape[1]
        assert np.array_equal(_stored(s, dt), s), p + ": a scale the checkpoint cannot hold exactly"
        g = f[p + ".qd_g_idx"].astype(np.int64) if p + ".qd_g_idx" in f else np.arange(K) // (K // G)
        deq = ((c - z[g].T).astype(np.float32) * s[g].T).astype(np.float32)
        if ft[p + ".weight"].dtype == torch.bfloat16:   # the fake weight in the model's dtype: the product rounded once
            deq = _stored(deq, "bf16")
        assert np.array_equal(deq, f[p + ".weight"]), p + ": stored scale x code is not the fake-quant"
        if rtn:
            w = w0[p + ".weight"].float().numpy()
            maxq = 255 if "w8a8-int8" in flags else 15
            want = np.clip(np.round(w / s[g].T) + z[g].T, 0, maxq)   # fp32 division, half to even
            assert np.array_equal(want.astype(np.int64), c), p + ": a code not rounded against the stored scale"
