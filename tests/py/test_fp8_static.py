# SPDX-License-Identifier: MIT
"""`qdist quantize --scheme fp8-static` (issue 20 item 1): llm-compressor's preset FP8 - e4m3 weights with
one scale per tensor, fp8 activations with one static scale per tensor from the calibration - checked
with the libraries users run (CPU):
- the config group equals compressed-tensors' preset FP8 field by field; weight_scale and input_scale
  are [1] tensors;
- compressed-tensors' FloatQuantizationCompressor decompresses every weight to the fake directory's;
- input_scale = amax / 448 of the Linear's input over the calibration, as measured here by transformers
  running the fake-quant model on the same calibration ids (the report's sha256 proves they are the
  same ids);
- transformers loads the export and runs it with its static activation quantization: its logits equal
  this test's own simulation (clamp(x / s, +-448) -> e4m3 -> * s on the fake-quant model);
- `qdist eval` of the export equals that of the fake directory; `qdist export` of the fake directory
  gives the same tensors;
- two data-parallel ranks (the maxima reduced over ranks) and a killed then resumed run give one
  uninterrupted rank's bytes; without --calib the run is refused in one line.
"""
import hashlib
import json
import os

import numpy as np
import pytest
import torch
import transformers
from compressed_tensors.compressors.naive_quantized.base import FloatQuantizationCompressor
from compressed_tensors.quantization import QuantizationScheme, preset_name_to_scheme

import export_fakegen as fg
import qdtest as qt
from qdtest import IDS, STORIES, qdist, tensors
from qdtest import WIKI as TEXT
from qdtest import checkpoint_bytes as files_bytes

NSEQ, SEQ = 8, 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("fs")
    src = fg.make_tiny128(STORIES, str(d / "t128"))
    rng = np.random.default_rng(3)
    ids = rng.integers(3, 512, NSEQ * SEQ).tolist()
    calib = d / "calib.jsonl"
    calib.write_text(json.dumps(ids) + "\n")  # one document: concat mode cuts it into NSEQ rows in order
    args = ["--backend", "cpu", "--quiet", "--progress", "none", "--scheme", "fp8-static", "--calib", str(calib),
            "--calib-mode", "concat", "--nsamples", str(NSEQ), "--seqlen", str(SEQ)]
    fake, out = str(d / "fake"), str(d / "out")
    qdist("quantize", "--model", src, "--output", fake, "--format", "fake", "--scale-dtype", "f32", *args)
    qdist("quantize", "--model", src, "--output", out, *args)
    return {"src": src, "fake": fake, "out": out, "ids": np.array(ids).reshape(NSEQ, SEQ), "args": args}


def fake_model(s, hook=None):
    """the source with the fake directory's weights; hook(name, module) per quantized Linear"""
    m = transformers.AutoModelForCausalLM.from_pretrained(s["src"], dtype=torch.float32).eval()
    f = tensors(s["fake"])
    with torch.no_grad():
        for name, mod in m.named_modules():
            if name + ".qd_codes" in f:
                mod.weight.copy_(f[name + ".weight"])
                if hook:
                    hook(name, mod)
    return m


def test_config_and_weights(setup):
    q = json.load(open(os.path.join(setup["out"], "config.json")))["quantization_config"]
    assert q["format"] == "float-quantized" and q["ignore"] == ["lm_head"]
    (g,) = q["config_groups"].values()
    want = preset_name_to_scheme("FP8", ["Linear"]).model_dump(mode="json")
    for part in ("weights", "input_activations"):
        for k, v in want[part].items():
            assert g[part][k] == v, (part, k, g[part][k], v)
    sch = QuantizationScheme.model_validate({k: v for k, v in g.items() if k != "format"})
    t, f = tensors(setup["out"]), tensors(setup["fake"])
    n = 0
    for name in t:
        if not name.endswith(".weight_scale"):
            continue
        p = name[:-len(".weight_scale")]
        assert tuple(t[name].shape) == (1,) and tuple(t[p + ".input_scale"].shape) == (1,), p
        assert t[p + ".weight"].dtype == torch.float8_e4m3fn
        got = FloatQuantizationCompressor.decompress({"weight": t[p + ".weight"], "weight_scale": t[name]}, sch)
        assert torch.equal(got["weight"].float(), f[p + ".weight"]), p
        assert float(t[p + ".input_scale"]) == float(f[p + ".qd_input_scale"]), p
        n += 1
    assert n == 14


def test_input_scales_are_calibration_amax(setup):
    rep = json.load(open(os.path.join(setup["out"], "qdist_report.json")))
    ids = setup["ids"]
    assert rep["calibration"]["sha256"] == hashlib.sha256(np.asarray(ids, "<i4").tobytes()).hexdigest()
    amax = {}

    def hook(name, mod):
        def pre(_m, a):
            amax[name] = max(amax.get(name, 0.0), float(a[0].abs().max()))
        mod.register_forward_pre_hook(pre)

    m = fake_model(setup, hook)
    with torch.no_grad():
        m(torch.tensor(ids))
    t = tensors(setup["out"])
    assert len(amax) == 14
    for name, a in amax.items():
        got = float(t[name + ".input_scale"])
        assert abs(got - a / 448) <= 1e-5 * a / 448, (name, got, a / 448)


def test_transformers_runs_static_activations(setup):
    def hook(name, mod):
        t = tensors(setup["out"])
        s = t[name + ".input_scale"].float()

        def pre(_m, a):
            x = a[0]
            return (torch.clamp(x / s, -448, 448).to(torch.float8_e4m3fn).float() * s,)
        mod.register_forward_pre_hook(pre)

    ref = fake_model(setup, hook)
    m = transformers.AutoModelForCausalLM.from_pretrained(setup["out"], dtype=torch.float32).eval()
    with torch.no_grad():
        a = m(torch.tensor([IDS])).logits[0].numpy()
        b = ref(torch.tensor([IDS])).logits[0].numpy()
    assert float(np.linalg.norm(a - b) / np.linalg.norm(b)) < 1e-5
    gen = m.generate(torch.tensor([IDS[:4]]), max_new_tokens=6, do_sample=False)
    assert gen.shape[1] == 10


def eval_ppl(d):
    return qt.eval_ppl(d, TEXT, 128, 4)


def test_eval_and_export_from_fake(setup, tmp_path):
    assert eval_ppl(setup["out"]) == eval_ppl(setup["fake"])
    exp = str(tmp_path / "exp")
    qdist("export", "--input", setup["fake"], "--output", exp, "--format", "compressed-tensors")
    a, b = tensors(setup["out"]), tensors(exp)
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_ranks_and_resume(setup, tmp_path):
    args = ["quantize", "--model", setup["src"], *setup["args"], "--chunk-tokens", "128"]
    one, two, res = str(tmp_path / "one"), str(tmp_path / "two"), str(tmp_path / "res")
    qdist(*args, "--output", one)
    qt.mpirun(2, *args, "--output", two)
    assert files_bytes(one) == files_bytes(two)
    r = qdist(*args, "--output", res, env=dict(os.environ, QD_INJECT_KILL="0:0"), ok=False)
    assert r.returncode != 0 and not os.path.exists(res)
    qdist(*args, "--output", res, "--resume")
    assert files_bytes(res) == files_bytes(one)


def test_needs_calibration(tmp_path):
    out = str(tmp_path / "out")
    r = qdist("quantize", "--model", STORIES, "--output", out, "--backend", "cpu", "--scheme", "fp8-static", ok=False)
    qt.one_line_error(r, 2, "--calib")
    assert not os.path.exists(out)
