# SPDX-License-Identifier: MIT
"""The FP4 weight schemes (issue 20 item 3): `qdist quantize --scheme nvfp4a16|mxfp4` written as
compressed-tensors nvfp4-pack-quantized / mxfp4-pack-quantized checkpoints, checked with the libraries
users run (CPU):
- the quantization_config group equals llm-compressor's preset (NVFP4A16, MXFP4A16) field by field, as
  the compressed-tensors library defines it, with "ignore": ["lm_head"];
- the tensors are the ones compressed-tensors' compressors read: weight_packed U8 [N, K/2], weight_scale
  F8_E4M3 [N, K/16] with weight_global_scale F32 [1] (NVFP4), or weight_scale U8 [N, K/32] (MXFP4);
- compressed-tensors' NVFP4PackedCompressor / MXFP4PackedCompressor decompress every Linear to qdist's
  dequantisation (the fake directory's .weight of the same run) bit for bit: the library forms
  e2m1 * (e4m3 / global) or e2m1 * 2^e in fp32 and casts to bfloat16 (its unpack dtype), so the
  expected weight is qdist's fp32 weight rounded once to bfloat16;
- transformers loads the export (dtype bfloat16: compressed-tensors decompresses fp4 to bfloat16) and
  its logits equal those of the source model in bfloat16 holding the fake-quant weights; it generates;
- `qdist eval` of the export equals `qdist eval` of the fake directory (the fake-quant ppl).
Bad inputs are one-line usage errors (exit 2).
"""
import json
import os
import shutil

import numpy as np
import pytest
import torch
import transformers
from compressed_tensors.compressors.mxfp4.base import MXFP4PackedCompressor
from compressed_tensors.compressors.naive_quantized.base import FloatQuantizationCompressor
from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
from compressed_tensors.quantization import preset_name_to_scheme
from safetensors.torch import load_file, save_file

import export_fakegen as fg
import qdtest as qt
from qdtest import IDS, STORIES, WIKI, qdist, tensors
from qdtest import checkpoint_bytes as files_bytes

CALIB = WIKI

PRESET = {"nvfp4a16": "NVFP4A16", "mxfp4": "MXFP4A16", "mxfp4-w4a4": "MXFP4", "fp8-dynamic": "FP8_DYNAMIC",
          "nvfp4": "NVFP4"}
FORMAT = {"nvfp4a16": "nvfp4-pack-quantized", "mxfp4": "mxfp4-pack-quantized", "mxfp4-w4a4": "mxfp4-pack-quantized",
          "fp8-dynamic": "float-quantized", "nvfp4": "nvfp4-pack-quantized"}
GROUP = {"nvfp4a16": 16, "mxfp4": 32, "mxfp4-w4a4": 32, "nvfp4": 16}
GPTQ = ["--method", "gptq", "--calib", CALIB, "--nsamples", "8", "--seqlen", "128"]


def quantize(model, out, fmt, *args):
    qdist("quantize", "--model", model, "--output", out, "--format", fmt, "--backend", "cpu", "--quiet",
          "--progress", "none", *args)


def eval_ppl(d):
    return qt.eval_ppl(d, CALIB, 128, 4)


def check_config(out, schemes):
    """the groups of the export against the presets, every field the preset sets"""
    q, groups = qt.ct_quant_config(out)
    for sc in schemes:
        want = preset_name_to_scheme(PRESET[sc], ["Linear"]).model_dump(mode="json")
        match = [g for g in groups if g["format"] == FORMAT[sc]]
        assert len(match) == 1, (sc, groups)
        for part in ("weights", "input_activations"):
            if want[part] is None:
                assert match[0][part] is None, (sc, part)
                continue
            for k, v in want[part].items():
                assert match[0][part][k] == v, (sc, part, k, match[0][part][k], v)
        assert match[0]["output_activations"] is None
    return q


def check_decompress(out, fake, q):
    """every fp4 Linear through compressed-tensors' own compressor equals qdist's weight (bf16-rounded)"""
    t, f = tensors(out), tensors(fake)
    n = 0
    for name in t:
        if not name.endswith(".weight_packed"):
            continue
        p = name[:-len(".weight_packed")]
        sd = {k[len(p) + 1:]: v for k, v in t.items() if k.startswith(p + ".")}
        nv = sd["weight_scale"].dtype == torch.float8_e4m3fn
        sc = "nvfp4a16" if nv else "mxfp4"  # mxfp4-w4a4 stores the same weights
        packed, scale = sd["weight_packed"], sd["weight_scale"]
        N, K = packed.shape[0], 2 * packed.shape[1]
        assert packed.dtype == torch.uint8 and (N, K) == tuple(f[p + ".weight"].shape), p
        assert tuple(scale.shape) == (N, K // GROUP[sc]), p
        if nv:
            assert sd["weight_global_scale"].dtype == torch.float32 and tuple(sd["weight_global_scale"].shape) == (1,)
        else:
            assert scale.dtype == torch.uint8 and "weight_global_scale" not in sd
        comp = NVFP4PackedCompressor if nv else MXFP4PackedCompressor
        got = comp.decompress(sd, qt.ct_scheme_of(q, FORMAT[sc], p))["weight"].float().numpy()
        want = fg.bf16_round(f[p + ".weight"].float().numpy())
        assert np.array_equal(got, want), (p, float(np.abs(got - want).max()))
        n += 1
    assert n > 0
    return n


def e2m1_round(y):
    """round to the E2M1 grid, ties to the even code, saturating at 6 (the format's definition)"""
    a = y.abs()
    q = torch.where(a <= 0.25, 0.0, torch.where(a < 0.75, 0.5, torch.where(a <= 1.25, 1.0, torch.where(
        a < 1.75, 1.5, torch.where(a <= 2.5, 2.0, torch.where(a < 3.5, 3.0, torch.where(a <= 5.0, 4.0, 6.0)))))))
    return q * torch.sign(y)


def mx_act_quant(x):
    """MXFP4 dynamic activations: per group of 32, scale 2^(e - 2) where 2^e is the group's amax rounded to
    a power of two (up from a mantissa of 1.75), values rounded to E2M1 (the OCP MX rule)"""
    shape, dt = x.shape, x.dtype
    g = x.float().reshape(*shape[:-1], shape[-1] // 32, 32)
    m, e = torch.frexp(g.abs().amax(-1, keepdim=True))  # amax = m 2^e, m in [0.5, 1)
    p2 = (e - 1 + (m >= 0.875).int()).float()
    scale = torch.exp2(p2 - 2)
    return (e2m1_round(g / scale) * scale).reshape(shape).to(dt)


def check_transformers(src, out, fake, tol, act=False):
    f = tensors(fake)
    ref_m = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    with torch.no_grad():
        for name, mod in ref_m.named_modules():
            if name + ".qd_codes" in f:
                mod.weight.copy_(f[name + ".weight"].to(torch.bfloat16))
                if act:
                    mod.register_forward_pre_hook(lambda _m, a: (mx_act_quant(a[0]),))
        ref = ref_m(torch.tensor([IDS])).logits[0].float().numpy()
    m = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    return qt.logits_match_and_generate(m, ref, tol)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"t128": fg.make_tiny128(STORIES, str(d / "t128")),
            "t128b": fg.make_tiny128(STORIES, str(d / "t128b"), dtype=fg.BF16)}


CASES = [
    # name, model, scheme, extra flags
    ("t128b-nvfp4a16", "t128b", "nvfp4a16", []),
    ("t128-mxfp4", "t128", "mxfp4", []),
    ("t128b-nvfp4a16-gptq", "t128b", "nvfp4a16", GPTQ),
    ("t128b-mxfp4-w4a4", "t128b", "mxfp4-w4a4", []),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_scheme_export(case, models, tmp_path):
    name, model, scheme, extra = case
    src = models[model]
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    quantize(src, fake, "fake", "--scheme", scheme, *extra)
    quantize(src, out, "compressed-tensors", "--scheme", scheme, *extra)
    q = check_config(out, [scheme])
    assert q["format"] == FORMAT[scheme]
    check_decompress(out, fake, q)
    rep = json.load(open(os.path.join(out, "qdist_report.json")))
    assert rep["settings"]["scheme"] == scheme
    assert all(m["scheme"] == scheme and m["bits"] == 4 and m["group_size"] == GROUP[scheme]
               for m in rep["modules"].values())
    # mxfp4-w4a4: transformers quantizes each Linear's input (MXFP4, dynamic per group of 32); the
    # reference applies this test's own simulation of it
    check_transformers(src, out, fake, 2e-2, act=scheme == "mxfp4-w4a4")
    assert eval_ppl(out) == eval_ppl(fake)
    # the fake directory exported afterwards gives the same checkpoint tensors, read back bit-exact
    exp = str(tmp_path / "exp")
    qdist("export", "--input", fake, "--output", exp, "--format", "compressed-tensors", "--verify")
    a, b = tensors(out), tensors(exp)
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[k].view(torch.uint8) if a[k].dtype == torch.float8_e4m3fn else a[k],
                           b[k].view(torch.uint8) if b[k].dtype == torch.float8_e4m3fn else b[k]) for k in a)


def test_scales_follow_compressed_tensors(models, tmp_path):
    """the scales are compressed-tensors' observers': NVFP4 global = 448 * 6 / amax(W) and local =
    e4m3(global * amax(group) / 6); MXFP4 the generate_mx_scales exponent of each group's amax"""
    from compressed_tensors.quantization.utils.mxfp_utils import generate_mx_scales
    src = models["t128"]
    w = tensors(src)
    for sc in ("nvfp4a16", "mxfp4"):
        out = str(tmp_path / sc)
        quantize(src, out, "compressed-tensors", "--scheme", sc)
        t = tensors(out)
        for p in ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"):
            W = w[p + ".weight"].float()
            gmax = W.reshape(W.shape[0], -1, GROUP[sc]).abs().amax(-1)
            if sc == "nvfp4a16":  # q_proj: the global of q/k/v together (test_fused_layers_share_the_global_scale)
                parts = [p] if "down" in p else [p.replace("q_proj", x) for x in ("q_proj", "k_proj", "v_proj")]
                g = torch.tensor([448.0 * 6.0]) / max(w[x + ".weight"].float().abs().max() for x in parts)
                assert torch.equal(t[p + ".weight_global_scale"], g.reshape(1)), p
                local = (g * (gmax / 6.0)).clamp(max=448).to(torch.float8_e4m3fn)
                assert torch.equal(t[p + ".weight_scale"].view(torch.uint8), local.view(torch.uint8)), p
            else:
                assert torch.equal(t[p + ".weight_scale"], generate_mx_scales(gmax).to(torch.uint8)), p


# the Linears vLLM loads as one fused layer, which keeps one weight_global_scale for all of them
# (llm-compressor's FUSED_LAYER_NAMES: they share the global of their joint amax)
FUSED = [("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("w1", "w3"), ("q_a_proj", "kv_a_proj_with_mqa")]


def check_fused_globals(src, out):
    """every weight_global_scale of export out is 448 * 6 / amax over the source weights of its fused group
    (the Linear alone when it belongs to none); returns the number of Linears checked"""
    w, t = tensors(src), tensors(out)
    glob = {k[:-len(".weight_global_scale")]: v for k, v in t.items() if k.endswith(".weight_global_scale")}
    for p, g in glob.items():
        parent, leaf = p.rsplit(".", 1)
        group = next((f for f in FUSED if leaf in f), (leaf,))
        members = [f"{parent}.{m}" for m in group if f"{parent}.{m}" in glob]
        amax = max(w[m + ".weight"].float().abs().max() for m in members)
        assert torch.equal(g, (torch.tensor([448.0 * 6.0]) / amax).reshape(1)), (p, members)
    return len(glob)


def tiny_moe(arch, out):
    common = dict(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                  tie_word_embeddings=False)
    if arch == "mixtral":
        m = qt.tiny_random(transformers.MixtralForCausalLM,
                           transformers.MixtralConfig(num_local_experts=4, num_experts_per_tok=2, **common))
    else:
        m = qt.tiny_random(transformers.Qwen3MoeForCausalLM,
                           transformers.Qwen3MoeConfig(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                                                       norm_topk_prob=True, **common))
    return qt.save_tiny(m, out)


@pytest.mark.parametrize("case", ["t128", "t128-gptq", "mixtral", "qwen3_moe"])
def test_fused_layers_share_the_global_scale(case, models, tmp_path):
    """NVFP4: q/k/v, gate/up (w1/w3 of each expert) share one global scale, the one of their joint amax
    (what vLLM's fused layers need: they keep one); o_proj, down_proj, w2 keep their own; the export still
    decompresses to qdist's weights and reads back to the fake-quant ppl"""
    src = models["t128"] if case.startswith("t128") else tiny_moe(case, str(tmp_path / "src"))
    extra = GPTQ if case.endswith("gptq") else []
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    quantize(src, fake, "fake", "--scheme", "nvfp4a16", *extra)
    quantize(src, out, "compressed-tensors", "--scheme", "nvfp4a16", *extra)
    assert check_fused_globals(src, out) >= 7
    t = tensors(out)
    g = {k: v.item() for k, v in t.items() if k.endswith("weight_global_scale")}
    if case.startswith("t128"):  # the fixture's parts have different amax: the shared global is not each one's own
        w = tensors(src)
        own = {p: 448.0 * 6.0 / w[p + ".weight"].float().abs().max().item() for p in
               ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj")}
        assert len({round(v, 3) for v in own.values()}) > 1, own
    q = check_config(out, ["nvfp4a16"]) if case.startswith("t128") else \
        json.load(open(os.path.join(out, "config.json")))["quantization_config"]  # MoE: routers ignored too
    check_decompress(out, fake, q)
    assert eval_ppl(out) == eval_ppl(fake)


@pytest.mark.parametrize("scheme", ["nvfp4a16", "mxfp4"])
def test_gptq_feeds_back_error(scheme, models, tmp_path):
    """GPTQ with fp4 targets: the group scales RTN uses (found from the whole weight first), E2M1 codes
    moved by the error feedback, and a smaller output error than RTN on the calibration data"""
    src = models["t128b"]
    f = {}
    for m in ("rtn", "gptq"):
        out = str(tmp_path / m)
        quantize(src, out, "fake", "--scheme", scheme, "--method", m, "--calib", CALIB, "--nsamples", "8",
                 "--seqlen", "128")
        f[m] = tensors(out)
    names = [k[:-len(".qd_codes")] for k in f["rtn"] if k.endswith(".qd_codes")]
    assert len(names) == 14
    moved = 0
    for p in names:
        assert torch.equal(f["rtn"][p + ".qd_scales"], f["gptq"][p + ".qd_scales"]), p
        assert int(f["gptq"][p + ".qd_codes"].max()) <= 15
        moved += int((f["rtn"][p + ".qd_codes"] != f["gptq"][p + ".qd_codes"]).sum())
    assert moved > 1000


def test_recipe_mixes_nvfp4_mlp_fp8_attention(models, tmp_path):
    """the issue's example: NVFP4 MLP, FP8 attention, lm_head left alone; one group per scheme,
    "mixed-precision" overall; both decompress through compressed-tensors to qdist's weights"""
    src = models["t128b"]
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"method": "rtn", "scheme": "nvfp4a16", "overrides": [
        {"match": "self_attn\\.", "scheme": "fp8-dynamic"}]}))
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    quantize(src, fake, "fake", "--recipe", str(recipe), "--scale-dtype", "bf16")
    quantize(src, out, "compressed-tensors", "--recipe", str(recipe))
    q = check_config(out, ["nvfp4a16", "fp8-dynamic"])
    assert q["format"] == "mixed-precision" and len(q["config_groups"]) == 2
    t, f = tensors(out), tensors(fake)
    assert t["model.layers.0.self_attn.q_proj.weight"].dtype == torch.float8_e4m3fn
    assert "model.layers.0.mlp.up_proj.weight_packed" in t and "lm_head.weight" in t
    check_decompress(out, fake, q)
    p = "model.layers.1.self_attn.o_proj"
    got = FloatQuantizationCompressor.decompress({"weight": t[p + ".weight"], "weight_scale": t[p + ".weight_scale"]},
                                                 qt.ct_scheme_of(q, "float-quantized", p))["weight"].float().numpy()
    assert np.array_equal(got, fg.bf16_round(f[p + ".weight"].float().numpy()))
    assert eval_ppl(out) == eval_ppl(fake)


BAD = [
    (["--scheme", "nvfp4a16", "--bits", "8"], "--bits"),
    (["--scheme", "mxfp4", "--group-size", "16"], "--group-size"),
    (["--scheme", "nvfp4a16", "--mse"], "--mse"),
    (["--scheme", "mxfp4", "--method", "awq"], "round-to-nearest"),
    (["--scheme", "nvfp4a16", "--format", "gptq"], "compressed-tensors"),
    (["--scheme", "nvfp4a16"], "divisible by its group of 16"),  # stories: down_proj has 172 input features
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_scheme_flags(args, needle, tmp_path):
    out = str(tmp_path / "out")
    r = qdist("quantize", "--model", STORIES, "--output", out, "--backend", "cpu", *args, ok=False)
    qt.one_line_error(r, 2, needle)
    assert not os.path.exists(out)


def test_inspect_vllm_rules_for_fp4(models, tmp_path):
    """whole fp4 groups per shard: t128's o_proj (K 128) splits into K 16 per shard at tp 8, below
    mxfp4's group of 32 but a whole nvfp4 group; down_proj (K 256) keeps 32"""
    for sc, bad in (("nvfp4a16", 0), ("mxfp4", 2)):
        out = str(tmp_path / sc)
        quantize(models["t128"], out, "compressed-tensors", "--scheme", sc)
        r = qdist("inspect", out, "--vllm-tp", "8", ok=False)
        assert f"{bad} do not load" in r.stdout, r.stdout
        if bad:
            rows = sorted(x.split(":")[0] for x in r.stdout.splitlines() if "does not load" in x)
            assert rows == ["model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj"], r.stdout


def test_killed_run_resumes_identical(models, tmp_path):
    """the staging keeps each module's scheme and nvfp4's global scale: a GPTQ nvfp4a16 / mxfp4 run
    killed after the first of its 2 blocks resumes to the bytes of an uninterrupted run"""
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"method": "gptq", "scheme": "nvfp4a16", "overrides": [
        {"match": "mlp\\.down_proj$", "scheme": "mxfp4"}]}))
    args = ["quantize", "--model", models["t128b"], "--backend", "cpu", "--quiet", "--progress", "none", "--recipe",
            str(recipe), "--calib", CALIB, "--nsamples", "4", "--seqlen", "128", "--format", "compressed-tensors"]
    ref, out = str(tmp_path / "ref"), str(tmp_path / "out")
    qdist(*args, "--output", ref)
    env = dict(os.environ, QD_INJECT_KILL="0:0")
    r = qdist(*args, "--output", out, ok=False, env=env)
    assert r.returncode != 0 and not os.path.exists(out)
    qdist(*args, "--output", out, "--resume")
    assert files_bytes(out) == files_bytes(ref)


@pytest.mark.parametrize("layout", ["data", "pipeline"])
def test_two_ranks_equal_one(layout, models, tmp_path):
    """GPTQ nvfp4a16 gives the same checkpoint bytes on 2 ranks as on one (exact numerics; the data layout
    splits each Linear's rows over the ranks, which share the whole weight's global scale)"""
    args = ["quantize", "--model", models["t128b"], "--backend", "cpu", "--quiet", "--progress", "none", "--scheme", "nvfp4a16",
            "--method", "gptq", "--calib", CALIB, "--nsamples", "4", "--seqlen", "128", "--numerics", "exact",
            "--parallel", layout]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    qdist(*args, "--output", one)
    qt.mpirun(2, *args, "--output", two)
    assert files_bytes(one) == files_bytes(two)


def test_global_scale_counts_a_dead_column(models, tmp_path):
    """GPTQ zeroes a weight column whose input is never active in the calibration (a dead column); nvfp4's
    global scale is still 448 * 6 / amax of the whole weight, as llm-compressor's observer finds it
    before GPTQ, on one rank as on two (whose rows share the one global). Here down_proj's input channel
    7 is dead (up_proj's row 7 is zero) and holds down_proj's largest |w|."""
    src = str(tmp_path / "src")
    shutil.copytree(models["t128"], src)
    w = load_file(os.path.join(src, "model.safetensors"))
    p = "model.layers.0.mlp."
    w[p + "up_proj.weight"][7] = 0
    w[p + "down_proj.weight"][:, 7] = 4 * w[p + "down_proj.weight"].abs().max()
    save_file(w, os.path.join(src, "model.safetensors"), metadata={"format": "pt"})
    args = ["quantize", "--model", src, "--format", "compressed-tensors", "--backend", "cpu", "--quiet",
            "--progress", "none", "--scheme", "nvfp4a16", *GPTQ, "--numerics", "exact"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    qdist(*args, "--output", one)
    t = tensors(one)
    want = (torch.tensor([448.0 * 6.0]) / w[p + "down_proj.weight"].abs().max()).reshape(1)
    assert torch.equal(t[p + "down_proj.weight_global_scale"], want)
    assert not (t[p + "down_proj.weight_packed"][:, 3] >> 4).any()  # column 7 (byte 3's high nibble): zeroed, code 0
    qt.mpirun(2, *args, "--parallel", "data", "--output", two)
    assert files_bytes(one) == files_bytes(two)


# --- nvfp4 (W4A4, preset NVFP4): nvfp4a16's weights plus a calibrated static input_global_scale ---

NV_NSEQ, NV_SEQ = 8, 64


def nv_act_quant(x, g):
    """NVFP4 activations as compressed-tensors' dynamic "local" tensor_group quantization: per group of 16,
    local = e4m3(g * (amax / 6)) (amax / 6 in the activation dtype, as the library; 0 -> 0.125), effective
    scale local / g, values rounded to E2M1"""
    shape, dt = x.shape, x.dtype
    v = x.reshape(*shape[:-1], shape[-1] // 16, 16)
    local = (g * (v.abs().amax(-1, keepdim=True) / 6).float()).clamp(-448, 448).to(torch.float8_e4m3fn).float()
    v = v.float()
    scale = torch.where(local == 0, torch.tensor(0.125), local) / g
    return (e2m1_round(v / scale) * scale).reshape(shape).to(dt)


@pytest.fixture(scope="module")
def nv(models, tmp_path_factory):
    """fake + export of nvfp4 (RTN and GPTQ) and of nvfp4a16 on the same calibration ids (one concat document)"""
    d = tmp_path_factory.mktemp("nv")
    ids = np.random.default_rng(5).integers(3, 512, NV_NSEQ * NV_SEQ).tolist()
    calib = d / "calib.jsonl"
    calib.write_text(json.dumps(ids) + "\n")
    cal = ["--calib", str(calib), "--calib-mode", "concat", "--nsamples", str(NV_NSEQ), "--seqlen", str(NV_SEQ)]
    r = {"ids": np.array(ids).reshape(NV_NSEQ, NV_SEQ), "cal": cal}
    for key, sc, meth in (("rtn", "nvfp4", "rtn"), ("gptq", "nvfp4", "gptq"), ("a16-gptq", "nvfp4a16", "gptq")):
        for fmt in (["fake"], ["compressed-tensors"]) if sc == "nvfp4" else (["compressed-tensors"],):
            out = str(d / f"{key}-{fmt[0]}")
            quantize(models["t128"], out, fmt[0], "--scheme", sc, "--method", meth, *cal,
                     *(["--scale-dtype", "f32"] if fmt[0] == "fake" else []))
            r[key, fmt[0]] = out
    return r


@pytest.mark.parametrize("meth", ["rtn", "gptq"])
def test_nvfp4_config_weights_input_global_scale(meth, nv, models):
    """config = preset NVFP4 field by field; compressed-tensors decompresses the weights to qdist's; the
    weight tensors are nvfp4a16's (GPTQ: byte for byte those of an nvfp4a16 run); input_global_scale F32 [1]
    per Linear, the fake directory's .qd_input_scale"""
    out, fake = nv[meth, "compressed-tensors"], nv[meth, "fake"]
    q = check_config(out, ["nvfp4"])
    assert q["format"] == "nvfp4-pack-quantized"
    assert check_decompress(out, fake, q) == 14
    t, f = tensors(out), tensors(fake)
    names = [k[:-len(".weight_packed")] for k in t if k.endswith(".weight_packed")]
    for p in names:
        g = t[p + ".input_global_scale"]
        assert g.dtype == torch.float32 and tuple(g.shape) == (1,), p
        assert torch.equal(g, f[p + ".qd_input_scale"].reshape(1)), p
    assert sorted(k for k in t if k.endswith("input_global_scale")) == sorted(p + ".input_global_scale" for p in names)
    if meth == "gptq":
        a16 = tensors(nv["a16-gptq", "compressed-tensors"])
        assert sorted(a16) == sorted(k for k in t if not k.endswith(".input_global_scale"))
        assert all(torch.equal(a16[k].view(torch.uint8) if a16[k].dtype == torch.float8_e4m3fn else a16[k],
                               t[k].view(torch.uint8) if t[k].dtype == torch.float8_e4m3fn else t[k]) for k in a16)
    rep = json.load(open(os.path.join(out, "qdist_report.json")))
    assert rep["settings"]["scheme"] == "nvfp4"


def test_nvfp4_input_global_scale_is_calibration_amax(nv, models):
    """input_global_scale = compressed-tensors' generate_gparam of the amax of each Linear's input, the amax
    measured here by transformers hooks on the fake-quant model over the same calibration ids"""
    from compressed_tensors.quantization.utils.helpers import generate_gparam
    m = transformers.AutoModelForCausalLM.from_pretrained(models["t128"], dtype=torch.float32).eval()
    f = tensors(nv["rtn", "fake"])
    amax = {}

    def observe(name):
        def pre(_m, a):
            amax[name] = max(amax.get(name, 0.0), float(a[0].abs().max()))
        return pre

    with torch.no_grad():
        for name, mod in m.named_modules():
            if name + ".qd_codes" in f:
                mod.weight.copy_(f[name + ".weight"])
                mod.register_forward_pre_hook(observe(name))
        m(torch.tensor(nv["ids"]))
    t = tensors(nv["rtn", "compressed-tensors"])
    assert len(amax) == 14
    for name, a in amax.items():
        want = float(generate_gparam(torch.tensor([-a]), torch.tensor([a])))
        got = float(t[name + ".input_global_scale"])
        assert abs(got - want) <= 1e-5 * want, (name, got, want)


def test_nvfp4_transformers_runs_and_eval(nv, models):
    """transformers + compressed-tensors load the export (input_global_scale into each Linear) and its
    logits follow this test's simulation of NVFP4 activations over the fake-quant weights; qdist eval
    reads the export as its weights (= the fake directory's ppl)"""
    out, fake = nv["rtn", "compressed-tensors"], nv["rtn", "fake"]
    t = tensors(out)
    m = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    for name, mod in m.named_modules():
        if name + ".input_global_scale" in t:
            assert torch.equal(mod.input_global_scale.data.float().reshape(1), t[name + ".input_global_scale"]), name
    f = tensors(fake)
    ref_m = transformers.AutoModelForCausalLM.from_pretrained(models["t128"], dtype=torch.bfloat16)
    with torch.no_grad():
        for name, mod in ref_m.named_modules():
            if name + ".qd_codes" in f:
                mod.weight.copy_(f[name + ".weight"].to(torch.bfloat16))
                g = t[name + ".input_global_scale"]
                mod.register_forward_pre_hook(lambda _m, a, g=g: (nv_act_quant(a[0], g),))
        ref = ref_m(torch.tensor([IDS])).logits[0].float().numpy()
        got = m(torch.tensor([IDS])).logits[0].float().numpy()
    err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    assert err < 1e-3, err
    assert m.generate(torch.tensor([IDS[:4]]), max_new_tokens=6, do_sample=False).shape[1] == 10
    assert eval_ppl(out) == eval_ppl(fake)


def test_nvfp4_two_ranks_resume_and_export_from_fake(nv, models, tmp_path):
    """the activation amax is maximised over ranks: 2 ranks give the bytes of one; the staging keeps
    input_global_scale (a run killed after its first block resumes to the same bytes); the fake directory
    exported afterwards gives the same tensors"""
    args = ["quantize", "--model", models["t128"], "--backend", "cpu", "--quiet", "--progress", "none", "--scheme",
            "nvfp4", *nv["cal"], "--chunk-tokens", "128"]
    two = str(tmp_path / "two")
    qt.mpirun(2, *args, "--output", two)
    assert files_bytes(nv["rtn", "compressed-tensors"]) == files_bytes(two)
    res = str(tmp_path / "res")
    r = qdist(*args, "--output", res, ok=False, env=dict(os.environ, QD_INJECT_KILL="0:0"))
    assert r.returncode != 0 and not os.path.exists(res)
    qdist(*args, "--output", res, "--resume")
    assert files_bytes(res) == files_bytes(two)
    exp = str(tmp_path / "exp")
    qdist("export", "--input", nv["rtn", "fake"], "--output", exp, "--format", "compressed-tensors", "--verify")
    a, b = tensors(two), tensors(exp)
    assert sorted(a) == sorted(b) and any(k.endswith(".input_global_scale") for k in a)
    assert all(torch.equal(a[k].view(torch.uint8) if a[k].dtype == torch.float8_e4m3fn else a[k],
                           b[k].view(torch.uint8) if b[k].dtype == torch.float8_e4m3fn else b[k]) for k in a)


def test_nvfp4_needs_calibration(models, tmp_path):
    out = str(tmp_path / "out")
    r = qdist("quantize", "--model", models["t128"], "--output", out, "--backend", "cpu", "--scheme", "nvfp4", ok=False)
    qt.one_line_error(r, 2, "--calib")
    assert not os.path.exists(out)
