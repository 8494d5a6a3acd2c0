# SPDX-License-Identifier: MIT
"""SmoothQuant (`qdist quantize --smoothquant ALPHA|auto`, issue 20 item 2) before RTN or GPTQ, checked
with the libraries users run (CPU):
- smoothing alone (every Linear left in full precision by a recipe) preserves the function: transformers'
  fp32 logits of the export equal the source's within fp32 noise, for a dense model and for MoE models
  (the router columns are scaled with the experts', so routing is unchanged), while the norms really
  changed;
- on a model built here with activation outlier channels (a few channels of each norm weight x 30, the
  Linears' columns / 30, so the function is the plain model's), W8A8 int8 with SmoothQuant has a lower
  logit error than plain W8A8 when transformers + compressed-tensors run the export with its dynamic
  per-token int8 activations (RTN: a fixed strength and auto; GPTQ: auto);
- the export's quantization_config is still llm-compressor's W8A8 preset; the report names the setting;
- two data-parallel ranks give one rank's bytes; a killed run resumes to the same bytes;
- bad values are one-line usage errors.
"""
import json
import os

import numpy as np
import pytest
import torch
import transformers
from compressed_tensors.quantization import preset_name_to_scheme
from safetensors.numpy import load_file, save_file

import export_fakegen as fg
import qdtest as qt
from qdtest import IDS, STORIES, qdist, rel
from qdtest import WIKI as TEXT
from qdtest import checkpoint_bytes as files_bytes

OUTLIERS = [3, 17, 60, 101]
CAL = ["--nsamples", "8", "--seqlen", "64"]


def quantize(src, out, *args, env=None, ok=True):
    return qdist("quantize", "--model", src, "--output", out, "--backend", "cpu", "--quiet", "--progress", "none",
                 "--calib", TEXT, *CAL, *args, env=env, ok=ok)


def tensors(d):
    return qt.tensors(d, "numpy")


def logits(path):
    m = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    with torch.no_grad():
        return m(torch.tensor([IDS])).logits[0].double().numpy()


def add_outliers(d, readers):
    """norm weight x 30 on OUTLIERS, the columns of the Linears reading it / 30: the same function, inputs
    with outlier channels. readers(i): {norm name: [Linear weight names]} of block i."""
    path = os.path.join(d, "model.safetensors")
    t = load_file(path)
    nblocks = 1 + max(int(k.split(".")[2]) for k in t if k.startswith("model.layers."))
    for i in range(nblocks):
        for norm, lins in readers(i, t).items():
            t[norm] = t[norm].copy()
            t[norm][OUTLIERS] *= 30
            for name in lins:
                t[name] = t[name].copy()
                t[name][:, OUTLIERS] /= 30
    save_file(t, path, metadata={"format": "pt"})
    return d


def dense_readers(i, t):
    p = f"model.layers.{i}."
    return {p + "input_layernorm.weight": [p + f"self_attn.{x}_proj.weight" for x in "qkv"],
            p + "post_attention_layernorm.weight": [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"]}


def moe_readers(i, t):
    p = f"model.layers.{i}."
    mlp = [k for k in t if k.startswith(p + "mlp.") and k.endswith(".weight") and "down" not in k and
           "w2" not in k]
    return {p + "input_layernorm.weight": [p + f"self_attn.{x}_proj.weight" for x in "qkv"],
            p + "post_attention_layernorm.weight": mlp}


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("m") / "t128o")
    fg.make_tiny128(STORIES, d)
    return add_outliers(d, dense_readers)


def skip_all(tmp_path):
    r = tmp_path / "skip.json"
    r.write_text(json.dumps({"scheme": "w8a8-int8", "method": "rtn", "overrides": [{"match": ".*_proj$", "skip": True},
                                                                                    {"match": "\\.(gate|w[123])$",
                                                                                     "skip": True}]}))
    return str(r)


def test_smoothing_alone_preserves_function(outlier_model, tmp_path):
    out = str(tmp_path / "out")
    quantize(outlier_model, out, "--recipe", skip_all(tmp_path), "--smoothquant", "0.5", "--format", "fake")
    a, b = tensors(outlier_model), tensors(out)
    moved = np.abs(a["model.layers.0.input_layernorm.weight"] - b["model.layers.0.input_layernorm.weight"]).max()
    assert moved > 1.0  # the x30 channels were pulled down
    assert rel(logits(out), logits(outlier_model)) < 1e-5


def build_moe(arch, out):
    """a tiny random MoE checkpoint (hidden 128) with outlier channels in its norms"""
    kw = dict(vocab_size=512, hidden_size=128, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
              tie_word_embeddings=False, num_experts_per_tok=2)
    if arch == "mixtral":
        cfg, cls = transformers.MixtralConfig(num_local_experts=4, **kw), transformers.MixtralForCausalLM
    else:  # a shared expert behind its sigmoid gate; block 1 dense
        cfg = transformers.Qwen2MoeConfig(num_experts=4, moe_intermediate_size=64, shared_expert_intermediate_size=64,
                                          decoder_sparse_step=1, mlp_only_layers=[1], **kw)
        cls = transformers.Qwen2MoeForCausalLM
    qt.save_tiny(qt.tiny_random(cls, cfg), out)
    return add_outliers(out, moe_readers)


@pytest.mark.parametrize("arch", ["mixtral", "qwen2_moe"])
def test_moe_smoothing_keeps_routing(arch, tmp_path):
    src = build_moe(arch, str(tmp_path / "src"))
    out = str(tmp_path / "out")
    quantize(src, out, "--recipe", skip_all(tmp_path), "--smoothquant", "0.5", "--format", "fake")
    a, b = tensors(src), tensors(out)
    router = [k for k in a if k.startswith("model.layers.0.") and (k.endswith("mlp.gate.weight") or
                                                                   k.endswith("block_sparse_moe.gate.weight"))]
    assert len(router) == 1 and not np.array_equal(a[router[0]], b[router[0]])
    assert rel(logits(out), logits(src)) < 1e-5


def w8a8_error(src, out):
    """logit error of transformers + compressed-tensors (dynamic per-token int8 activations) against the
    source in fp32"""
    return rel(logits(out), logits(src))


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_smoothquant_lowers_w8a8_error(method, outlier_model, tmp_path):
    err = {}
    for sq in ("off", "0.5", "auto") if method == "rtn" else ("off", "auto"):
        out = str(tmp_path / sq)
        quantize(outlier_model, out, "--scheme", "w8a8-int8", "--method", method, "--format", "compressed-tensors",
                 *([] if sq == "off" else ["--smoothquant", sq]))
        err[sq] = w8a8_error(outlier_model, out)
        q = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
        want = preset_name_to_scheme("W8A8", ["Linear"]).model_dump(mode="json")
        (g,) = q["config_groups"].values()
        for part in ("weights", "input_activations"):
            assert {k: g[part][k] for k in want[part]} == want[part]
        rep = json.load(open(os.path.join(out, "qdist_report.json")))["settings"]
        assert rep.get("smoothquant", "off") == (sq if sq in ("off", "auto") else 0.5)
    print("W8A8 logit error", method, err)
    assert err.get("0.5", 0) < 0.7 * err["off"], err
    assert err["auto"] < 0.7 * err["off"], err


@pytest.mark.parametrize("numerics,method", [("fast", "rtn"), ("exact", "gptq")])
def test_two_ranks_equal_one(numerics, method, outlier_model, tmp_path):
    """4 chunks of 2 sequences, 2 per rank: the maxima and the auto search's sampled tokens come from both"""
    args = ["quantize", "--model", outlier_model, "--backend", "cpu", "--quiet", "--progress", "none", "--calib", TEXT,
            *CAL, "--chunk-tokens", "128", "--numerics", numerics, "--scheme", "w8a8-int8", "--method", method,
            "--smoothquant", "auto"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    qdist(*args, "--output", one)
    qt.mpirun(2, *args, "--output", two)
    assert files_bytes(one) == files_bytes(two)


def test_killed_run_resumes_identical(outlier_model, tmp_path):
    """the replay of a staged block computes with its smoothed norms: the resumed run's later blocks see
    the activations of the uninterrupted run"""
    args = ["--scheme", "w8a8-int8", "--method", "gptq", "--smoothquant", "auto"]
    ref, out = str(tmp_path / "ref"), str(tmp_path / "out")
    quantize(outlier_model, ref, *args)
    r = quantize(outlier_model, out, *args, env=dict(os.environ, QD_INJECT_KILL="0:0"), ok=False)
    assert r.returncode != 0 and not os.path.exists(out)
    bad = quantize(outlier_model, out, *args[:-1], "0.5", "--resume", ok=False)
    assert bad.returncode == 1 and "fingerprint field 'smoothquant' differs" in bad.stderr, bad.stderr
    quantize(outlier_model, out, *args, "--resume")
    assert files_bytes(out) == files_bytes(ref)


BAD = [
    (["--scheme", "w8a8-int8", "--smoothquant", "1.5"], "--smoothquant"),
    (["--scheme", "w8a8-int8", "--smoothquant", "x"], "--smoothquant"),
    (["--smoothquant", "0.5"], "--scheme w8a8-int8"),
    (["--method", "awq", "--smoothquant", "0.5"], "--method gptq or rtn"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_flags(args, needle, tmp_path):
    out = str(tmp_path / "out")
    r = quantize(STORIES, out, *args, ok=False)
    qt.one_line_error(r, 2, needle)
    assert not os.path.exists(out)


def test_needs_calibration(tmp_path):
    out = str(tmp_path / "out")
    r = qdist("quantize", "--model", STORIES, "--output", out, "--backend", "cpu", "--scheme", "w8a8-int8",
              "--smoothquant", "auto", ok=False)
    qt.one_line_error(r, 2, "--calib", "--smoothquant")
