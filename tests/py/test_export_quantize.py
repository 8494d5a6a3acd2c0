# SPDX-License-Identifier: MIT
"""The real path: `qdist quantize --format fake` on stories260K, then `qdist export` to every format,
checked by the independent unpackers of test_export_formats.py; and `qdist quantize --format gptq`
(quantize + export in one run, through the staging source) must write the same tensors as
fake + export.
"""
import json
import os

import numpy as np
import pytest

import export_fakegen as fg
from qdtest import STORIES, qdist
from qdtest import WIKI as CALIB
from test_export_formats import check_export, run_export


def quantize(out, fmt, *args, recipe=None):
    return qdist("quantize", "--model", STORIES, "--output", out, "--calib", CALIB, "--format", fmt, "--nsamples", "8",
                 "--seqlen", "128", "--quiet", *args, *(["--recipe", recipe] if recipe else []), timeout=300)


RUNS = [
    ("gptq-w4-sym", ["--method", "gptq", "--bits", "4", "--group-size", "32"], ["gptq", "gptq_v2",
                                                                                  "compressed-tensors"]),
    ("gptq-w4-asym-act", ["--method", "gptq", "--bits", "4", "--group-size", "32", "--asym", "--act-order"],
     ["gptq_v2"]),
    ("gptq-w8-static", ["--method", "gptq", "--bits", "8", "--group-size", "32", "--act-order", "--static-groups"],
     ["gptq", "compressed-tensors"]),
    ("rtn-w4-asym", ["--method", "rtn", "--bits", "4", "--group-size", "32", "--asym"], ["awq", "compressed-tensors"]),
]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """stories260K's down_proj has K = 172, which no group of 32 divides: one group per row there"""
    p = tmp_path_factory.mktemp("recipe") / "down-channel.json"
    p.write_text(json.dumps({"overrides": [{"match": "mlp\\.down_proj$", "group_size": -1}]}))
    return str(p)


@pytest.mark.parametrize("run", RUNS, ids=[r[0] for r in RUNS])
def test_quantize_fake_then_export(run, recipe, tmp_path):
    name, args, formats = run
    fake = str(tmp_path / "fake")
    quantize(fake, "fake", *args, recipe=recipe)
    for fmt in formats:
        out = str(tmp_path / ("out-" + fmt))
        r = run_export(fake, out, fmt, "--verify", ok=False)
        if fmt == "awq":
            # AWQ cannot hold down_proj's per-row (-1) group: refused before any work, naming the others
            assert r.returncode == 1 and "group size" in r.stderr and not os.path.exists(out), r.stderr
            continue
        assert r.returncode == 0, r.stderr
        check_export(fake, out, fmt)


def test_quantize_direct_equals_fake_plus_export(recipe, tmp_path):
    args = ["--method", "gptq", "--bits", "4", "--group-size", "32", "--act-order"]
    fake, direct, exp = str(tmp_path / "fake"), str(tmp_path / "direct"), str(tmp_path / "exp")
    quantize(fake, "fake", *args, recipe=recipe)
    quantize(direct, "gptq", *args, recipe=recipe)
    run_export(fake, exp, "gptq")
    a = fg.read_st(os.path.join(direct, "model.safetensors"))
    b = fg.read_st(os.path.join(exp, "model.safetensors"))
    assert set(a) == set(b)
    for k in a:
        assert a[k][0] == b[k][0] and np.array_equal(a[k][1], b[k][1]), k
    check_export(fake, direct, "gptq", compare_report=False)  # its report says format gptq, not fake


def eval_ppl(model_dir):
    r = qdist("eval", "--model", model_dir, "--data", CALIB, "--seqlen", "128", "--max-windows", "4", "--json",
              timeout=300)
    return json.loads(r.stdout.strip().splitlines()[-1])["ppl"]


def test_eval_of_exports_reproduces_fake_ppl(tmp_path):
    """Done-when of the export issue: qdist eval on each export gives the fake-quant perplexity"""
    skip_down = str(tmp_path / "skip-down.json")
    with open(skip_down, "w") as f:
        json.dump({"overrides": [{"match": "mlp\\.down_proj$", "skip": True}]}, f)
    fake = str(tmp_path / "fake")
    quantize(fake, "fake", "--method", "rtn", "--bits", "4", "--group-size", "32", "--asym", recipe=skip_down)
    ref = eval_ppl(fake)
    for fmt in ["gptq_v2", "awq", "compressed-tensors"]:
        out = str(tmp_path / ("out-" + fmt))
        run_export(fake, out, fmt)
        assert eval_ppl(out) == pytest.approx(ref, rel=1e-9, abs=0), fmt


def test_bf16_model_compressed_tensors_scales(tmp_path):
    """a bf16 model quantized with --scale-dtype bf16: compressed-tensors stores BF16 scales and the
    export equals the fake weights exactly"""
    model = fg.make_tiny128(STORIES, str(tmp_path / "t128b"), dtype=fg.BF16)
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    qdist("quantize", "--model", model, "--output", fake, "--calib", CALIB, "--format", "fake", "--method", "gptq",
          "--bits", "4", "--group-size", "64", "--asym", "--scale-dtype", "bf16", "--nsamples", "8", "--seqlen", "128",
          "--quiet", timeout=300)
    r = run_export(fake, out, "compressed-tensors", "--verify")
    assert "not exactly representable" not in r.stderr
    check_export(fake, out, "compressed-tensors")
