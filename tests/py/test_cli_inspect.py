# SPDX-License-Identifier: MIT
"""`qdist inspect` on the stories260K-hf fixture (fixtures/) and on broken copies of it.

The expected parameter count is the sum of numel over the tensors as the `safetensors` package
reads them, and the block count comes from config.json read with the json module: both independent
of qdist's own parsing.
"""
import json
import os
import re
import shutil

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import qdtest as qt
from qdtest import STORIES


def run(*args):
    return qt.qdist(*args, ok=False, timeout=60)


def need_stories():
    qt.need(STORIES / "model.safetensors")


def reference_counts():
    total, shapes = 0, {}
    with safe_open(os.path.join(STORIES, "model.safetensors"), framework="numpy") as f:
        for k in f.keys():
            shape = f.get_slice(k).get_shape()
            n = 1
            for d in shape:
                n *= d
            total += n
            shapes[k] = (f.get_slice(k).get_dtype(), list(shape))
    return total, shapes


def test_inspect_text_stories():
    need_stories()
    r = run("inspect", STORIES)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(STORIES, "config.json")) as f:
        nlayers = json.load(f)["num_hidden_layers"]
    assert nlayers == 5
    assert re.search(r"^blocks\s+5$", r.stdout, re.M), r.stdout
    total, _ = reference_counts()
    m = re.search(r"^total parameters\s+(\d+)", r.stdout, re.M)
    assert m and int(m.group(1)) == total, r.stdout
    assert "LlamaForCausalLM" in r.stdout
    # the folded layout: block 0 listed, the rest summarised on one line
    assert "blocks 1..4: same layout as block 0" in r.stdout
    assert "model.layers.0.self_attn.q_proj.weight" in r.stdout
    assert "model.layers.3." not in r.stdout
    assert "quantization_config  none" in r.stdout


def test_inspect_json_stories():
    need_stories()
    r = run("inspect", STORIES, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    total, shapes = reference_counts()
    assert info["blocks"] == 5
    assert info["total_parameters"] == total
    assert {t["name"]: (t["dtype"], t["shape"]) for t in info["tensors"]} == shapes
    assert info["quantization_config"] is None
    assert info["config"]["num_key_value_heads"] == 4


def test_inspect_quantization_config(tmp_path):
    need_stories()
    d = tmp_path / "q"
    d.mkdir()
    # copyfile, not copytree: the fixture is read-only and its modes must not follow
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(os.path.join(STORIES, name), d / name)
    cfg = json.loads((d / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    (d / "config.json").write_text(json.dumps(cfg))
    info = json.loads(run("inspect", str(d), "--json").stdout)
    assert info["quantization_config"] == cfg["quantization_config"]
    assert '"quant_method":"gptq"' in run("inspect", str(d)).stdout


@pytest.mark.parametrize("keep", [4, 100, 600000])
def test_inspect_truncated(tmp_path, keep):
    need_stories()
    d = tmp_path / "trunc"
    d.mkdir()
    shutil.copy(os.path.join(STORIES, "config.json"), d / "config.json")
    with open(os.path.join(STORIES, "model.safetensors"), "rb") as f:
        (d / "model.safetensors").write_bytes(f.read(keep))
    r = run("inspect", str(d))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(d / "model.safetensors") in lines[0]
    assert r.stdout == ""


def test_inspect_bad_inputs(tmp_path):
    # config.json missing, not JSON, unsupported architecture, pickles only: one line each, exit 1
    d = tmp_path / "m"
    d.mkdir()
    r = run("inspect", str(d))
    assert r.returncode == 1 and "config.json" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (d / "config.json").write_text("{not json")
    r = run("inspect", str(d))
    assert r.returncode == 1 and "not valid JSON" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (d / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    r = run("inspect", str(d))
    assert r.returncode == 1 and "LlamaForCausalLM" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (d / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "vocab_size": 8}))
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02")
    r = run("inspect", str(d))
    assert r.returncode == 1 and "never unpickles" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_inspect_folds_only_identical_blocks(tmp_path):
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 16,
           "num_hidden_layers": 4, "num_attention_heads": 2, "vocab_size": 10}
    t = {"model.embed_tokens.weight": np.zeros((10, 8), np.float32), "model.norm.weight": np.ones(8, np.float32)}
    for b in range(4):
        t[f"model.layers.{b}.input_layernorm.weight"] = np.ones(8, np.float32)
        t[f"model.layers.{b}.mlp.up_proj.weight"] = np.zeros((16, 8), np.float32 if b < 2 else np.float16)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    save_file(t, str(tmp_path / "model.safetensors"))
    r = run("inspect", str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "block 1: same layout as block 0" in out
    assert "block 2 (2 tensors):" in out and "model.layers.2.mlp.up_proj.weight" in out
    assert "block 3: same layout as block 2" in out
    assert re.search(r"^total parameters\s+%d\b" % sum(a.size for a in t.values()), out, re.M)


def test_inspect_usage_errors():
    r = run("inspect")
    assert r.returncode == 2 and "MODEL_DIR" in r.stderr
    r = run("inspect", "--bogus", "x")
    assert r.returncode == 2 and "--bogus" in r.stderr
    r = run("inspect", "a", "b")
    assert r.returncode == 2
    r = run("inspect", "--json=1", "x")
    assert r.returncode == 2
    r = run("inspect", "--help")
    assert r.returncode == 0 and "MODEL_DIR" in r.stdout
