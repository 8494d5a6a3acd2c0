# SPDX-License-Identifier: MIT
"""The fifth bad-input sweep: the mixture-of-experts models and flags of issues 19 and 20 (docs/bad-input-sweep-5.md
has the table). The cases that were not handled well, each now one clear line and the right exit:
  - a NaN or Inf in a weight no quantized Linear checks (a router, DeepSeek-V3's e_score_correction_bias) or in an
    expert no evaluated token reaches: quantize blamed the next block's activations or "route:", eval printed a
    perplexity or "non-finite loss" naming only the directory;
  - an expert past the config's count (experts.4 of num_local_experts 4): quantized without it, its float tensors
    passed through into the export.
The tiny Mixtral is test_sweep3's (numpy); the DeepSeek-V3 one is tests/py/test_dsv3_model.py's (transformers).
"""
import os
import shutil
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from test_sweep3 import REPO, TEXT, nothing_written, one_line, quantize, run, tiny

sys.path.insert(0, os.path.join(REPO, "tests", "py"))

ROUTER = "model.layers.0.block_sparse_moe.gate.weight"
EBIAS = "model.layers.1.mlp.gate.e_score_correction_bias"


@pytest.fixture(scope="module")
def dsv3(tmp_path_factory):
    """one tiny DeepSeek-V3 (MLA, 8 routed experts from block 1), copied by each test"""
    import test_dsv3_model
    return test_dsv3_model.build("q_lora", tmp_path_factory.mktemp("dsv3") / "src")


@pytest.fixture
def calib(tmp_path):
    p = tmp_path / "calib.txt"
    p.write_text(open(TEXT, encoding="utf-8").read()[:50000], encoding="utf-8")
    return p


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def edit_tensors(model, fn):
    f = model / "model.safetensors"
    t = load_file(str(f))
    fn(t)
    save_file(t, str(f), metadata={"format": "pt"})


def evaluate(d):
    return run("eval", "--model", d, "--data", TEXT, "--seqlen", "32", "--max-windows", "1", "--backend", "cpu")


def poison(t, name, value):
    x = t[name].copy()
    x.reshape(-1)[5] = value
    t[name] = x


# (model, tensor, value); before: quantize blamed block 1's activations / "route: e_score_correction_bias[5]",
# eval "non-finite loss in window 0" / a perplexity (expert 5 of block 1 is reached by none of the 31 tokens)
NONFINITE = [("mixtral", ROUTER, np.nan), ("dsv3", EBIAS, np.inf), ("dsv3", "model.layers.1.mlp.experts.5.down_proj.weight",
                                                                   np.nan)]


@pytest.mark.parametrize("arch,name,value", NONFINITE, ids=["router-nan", "ebias-inf", "unrouted-expert-nan"])
def test_a_nonfinite_weight_is_named_with_its_file(tmp_path, request, calib, arch, name, value):
    src = tiny(tmp_path, moe=True) if arch == "mixtral" else copy_model(request.getfixturevalue("dsv3"), tmp_path / "m")
    edit_tensors(src, lambda t: poison(t, name, value))
    out = tmp_path / "out"
    for r in (evaluate(src), quantize(src, out, "gptq", "--calib", calib, "--nsamples", "2", "--seqlen", "16")):
        assert r.returncode == 1, r.stderr
        one_line(r, "error", f"{src / 'model.safetensors'}: tensor '{name}' holds 1 NaN/Inf value")
        assert "ppl" not in r.stdout
    assert not out.exists()


@pytest.mark.parametrize("arch", ["mixtral", "dsv3"])
def test_an_expert_past_the_configs_count_is_refused(tmp_path, request, calib, arch):
    """experts.E of a model whose config.json says E experts was passed through, as floats, into the export"""
    if arch == "mixtral":
        src, pre, field, names = tiny(tmp_path, moe=True), "model.layers.1.block_sparse_moe.experts.", \
            "num_local_experts=4", ("w1", "w2", "w3")
    else:
        src, pre, field, names = copy_model(request.getfixturevalue("dsv3"), tmp_path / "m"), \
            "model.layers.1.mlp.experts.", "n_routed_experts=8", ("gate_proj", "up_proj", "down_proj")
    n = int(field.split("=")[1])
    edit_tensors(src, lambda t: t.update({f"{pre}{n}.{w}.weight": t[f"{pre}0.{w}.weight"].copy() for w in names}))
    want = (f"{src / 'model.safetensors'}: {pre}{n}.", f"belongs to expert {n} but config.json has {field} "
            f"(experts 0..{n - 1})")
    out = tmp_path / "out"
    for r in (evaluate(src), quantize(src, out, "gptq", "--calib", calib, "--nsamples", "2", "--seqlen", "16")):
        assert r.returncode == 1, r.stderr
        one_line(r, "error", *want)
    nothing_written(tmp_path, out)
    r = run("inspect", src)  # inspect shows what is there: a warning, as for a missing tensor
    assert r.returncode == 0, r.stderr
    one_line(r, "warning", *want)
