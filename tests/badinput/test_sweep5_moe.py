# SPDX-License-Identifier: MIT
"""The fifth bad-input sweep: the mixture-of-experts models and flags of issues 19 and 20 (docs/bad-input-sweep-5.md
has the table). The cases that were not handled well, each now one clear line and the right exit:
  - a NaN or Inf in a weight no quantized Linear checks (a router, DeepSeek-V3's e_score_correction_bias) or in an
    expert no evaluated token reaches: quantize blamed the next block's activations or "route:", eval printed a
    perplexity or "non-finite loss" naming only the directory;
  - an expert past the config's count (experts.4 of num_local_experts 4): quantized without it, its float tensors
    passed through into the export;
  - --moe-calibration all / --moe-min-tokens with RTN, which calibrates no expert: silently ignored;
  - --kv-cache on an MLA model and a spec the method refuses, on 2 ranks: the same error once per rank;
  - a recipe override that matches only a router (kept in full precision): silently changed nothing;
  - a --format fake directory that lost one expert's qd_codes: exported with that expert unquantized.
The tiny Mixtral is test_sweep3's (numpy); the DeepSeek-V3 one is tests/py/test_dsv3_model.py's (transformers).
"""
import json
import os
import shutil
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from test_sweep3 import REPO, TEXT, drop_tensor, nothing_written, one_line, qdist_lines, quantize, run, tiny

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


@pytest.mark.parametrize("flag,ranks", [(["--moe-calibration", "all"], 0), (["--moe-min-tokens", "4"], 0),
                                        (["--moe-min-tokens", "4"], 2)])
def test_moe_calibration_flags_with_rtn_are_refused(tmp_path, calib, flag, ranks):
    """RTN calibrates no expert: the flag changed nothing (as --expert-parallel on with RTN, sweep 3)"""
    out = tmp_path / "out"
    r = quantize(tiny(tmp_path, moe=True), out, "rtn", "--calib", calib, "--nsamples", "2", "--seqlen", "16", *flag,
                 mpi=ranks)
    assert r.returncode == 2, r.stderr
    one_line(r, "error", " ".join(flag).replace(" 4", ""), "RTN calibrates none")
    nothing_written(tmp_path, out)


def test_moe_min_tokens_with_all_token_calibration_is_named(tmp_path, calib):
    """--moe-calibration all gives every expert the all-token statistics: the fallback threshold changes nothing
    (a warning: scripts that loop over both modes with one --moe-min-tokens keep running)"""
    model, args = tiny(tmp_path, moe=True), ["--calib", calib, "--nsamples", "2", "--seqlen", "16", "--format", "fake"]
    r = quantize(model, tmp_path / "a", "gptq", *args, "--moe-calibration", "all", "--moe-min-tokens", "4")
    assert r.returncode == 0, r.stderr
    one_line(r, "warning", "--moe-min-tokens", "--moe-calibration all", "changes nothing")
    r = quantize(model, tmp_path / "b", "gptq", *args, "--moe-calibration", "all")
    assert r.returncode == 0 and not qdist_lines(r, "warning"), r.stderr
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_run_checks_on_two_ranks_print_once(tmp_path, dsv3, calib):
    """each rank printed the same refusal: --kv-cache on an MLA model, and a group size the Linears refuse"""
    out = tmp_path / "out"
    r = quantize(dsv3, out, "gptq", "--calib", calib, "--nsamples", "2", "--seqlen", "16", "--kv-cache", "fp8", mpi=2)
    assert r.returncode == 1, r.stderr
    one_line(r, "error", "--kv-cache", "MLA")
    r = run("quantize", "--model", dsv3, "--output", out, "--method", "awq", "--backend", "cpu", "--quiet",
            "--group-size", "48", "--calib", calib, "--nsamples", "2", "--seqlen", "16", mpi=2)
    assert r.returncode == 2, r.stderr
    one_line(r, "error", "group_size 48 does not divide the 64 input features")
    nothing_written(tmp_path, out)


def test_an_override_matching_only_routers_is_named(tmp_path, calib):
    """the routers stay in full precision whatever a recipe says: an override that finds only them changes
    nothing, like one that finds no Linear (sweep 3)"""
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"overrides": [{"match": "block_sparse_moe\\.gate$", "bits": 8},
                                                {"match": "experts\\.[0-9]+\\.w2$", "bits": 8}]}))
    out = tmp_path / "out"
    r = quantize(tiny(tmp_path, moe=True), out, "gptq", "--calib", calib, "--nsamples", "2", "--seqlen", "16",
                 "--recipe", recipe, "--format", "fake")
    assert r.returncode == 0, r.stderr
    one_line(r, "warning", recipe, "overrides[0]", "finds no Linear", "routers")
    report = json.loads((out / "qdist_report.json").read_text())["modules"]
    assert ROUTER[:-len(".weight")] not in report  # not quantized
    assert {v["bits"] for k, v in report.items() if k.endswith(".w2")} == {8}  # the other override acts


def test_a_fake_directory_missing_one_experts_codes_is_refused(tmp_path):
    """export took the expert's fake-quant .weight for an unquantized Linear: a gptq / compressed-tensors
    checkpoint with one expert in float (listed in "ignore"), which vLLM's fused MoE layer cannot load"""
    fake = tmp_path / "fake"
    r = quantize(tiny(tmp_path, moe=True), fake, "rtn", "--format", "fake")
    assert r.returncode == 0, r.stderr
    name = "model.layers.0.block_sparse_moe.experts.2.w1"
    drop_tensor(fake / "model.safetensors", name + ".qd_codes")
    for fmt in ("gptq", "compressed-tensors"):
        out = tmp_path / "out"
        r = run("export", "--input", fake, "--output", out, "--format", fmt)
        assert r.returncode == 1, r.stderr
        one_line(r, "error", fake, f"has no '{name}.qd_codes' beside it")
        nothing_written(tmp_path, out)

