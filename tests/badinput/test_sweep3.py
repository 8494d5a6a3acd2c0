# SPDX-License-Identifier: MIT
"""The third bad-input sweep: the flags, recipes and checkpoints issues 18-20 added (docs/bad-input-sweep-3.md
has the whole table). The cases that were not handled well, each now one clear line naming the flag or
file, the right exit (2 usage, 1 runtime) and nothing written that looks complete:
  - --smoothquant values strtod took but the docs do not (hex, leading blanks, an underflow to 0), and
    --smoothquant with the fp4 schemes (weight-only, or W4A4 that auto's int8 search does not measure);
  - --expert-parallel on where it cannot act (one rank, a dense model, RTN, AWQ): was silently ignored;
  - a recipe override whose "match" finds no Linear (a typo, an expert past the model's experts): was
    silent, now one warning naming the override (the run itself is right: the override changes nothing).
Tiny models are written here with numpy (no torch): a Llama and a Mixtral of 2 blocks.
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from safetensors.numpy import save_file

REPO = os.environ.get("QD_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
QDIST = os.environ.get("QDIST_BIN", os.path.join(REPO, "build", "qdist"))
STORIES = os.path.join(REPO, "fixtures", "stories260K-hf")
TEXT = os.path.join(REPO, "fixtures", "wikitext-2-raw", "wiki.test.raw")
TIMEOUT = 180
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}
H, I, V, L, E = 64, 128, 512, 2, 4


def run(*args, mpi=0):
    env = dict(os.environ, **MPI_ENV)
    cmd = (["mpirun", "-n", str(mpi)] if mpi else []) + [QDIST] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)


def qdist_lines(r, level="error"):
    """qdist's own lines (mpirun adds its banner after a failed rank)"""
    return [ln for ln in r.stderr.splitlines() if ln.startswith("qdist") and f"{level}:" in ln]


def one_line(r, level, *needles):
    lines = qdist_lines(r, level)
    others = [ln for ln in r.stderr.splitlines() if ln.startswith("qdist") and ln not in lines]
    assert len(lines) == 1 and not others, r.stderr
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def nothing_written(tmp_path, out):
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(out.name + ".")]


def tiny(tmp_path, moe=False):
    """a 2-block Llama or Mixtral (E experts, top-2) with the stories tokenizer"""
    rng = np.random.default_rng(0)
    d = tmp_path / ("mixtral" if moe else "llama")
    d.mkdir()
    w = lambda *s: (rng.standard_normal(s) * 0.1).astype(np.float32)  # noqa: E731
    t = {"model.embed_tokens.weight": w(V, H), "model.norm.weight": np.ones(H, np.float32), "lm_head.weight": w(V, H)}
    for b in range(L):
        p = f"model.layers.{b}."
        t[p + "input_layernorm.weight"] = np.ones(H, np.float32)
        t[p + "post_attention_layernorm.weight"] = np.ones(H, np.float32)
        for n in ("q", "k", "v", "o"):
            t[p + f"self_attn.{n}_proj.weight"] = w(H, H)
        if moe:
            t[p + "block_sparse_moe.gate.weight"] = w(E, H)
            for e in range(E):
                q = p + f"block_sparse_moe.experts.{e}."
                t[q + "w1.weight"], t[q + "w3.weight"], t[q + "w2.weight"] = w(I, H), w(I, H), w(H, I)
        else:
            t[p + "mlp.gate_proj.weight"], t[p + "mlp.up_proj.weight"], t[p + "mlp.down_proj.weight"] = \
                w(I, H), w(I, H), w(H, I)
    save_file(t, str(d / "model.safetensors"), metadata={"format": "pt"})
    cfg = {"architectures": ["MixtralForCausalLM" if moe else "LlamaForCausalLM"],
           "model_type": "mixtral" if moe else "llama", "hidden_size": H, "intermediate_size": I,
           "num_hidden_layers": L, "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16,
           "vocab_size": V, "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": False, "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2}
    if moe:
        cfg.update(num_local_experts=E, num_experts_per_tok=2)
    (d / "config.json").write_text(json.dumps(cfg))
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(STORIES, f), d)
    return d


@pytest.fixture
def calib(tmp_path):
    p = tmp_path / "calib.txt"
    with open(TEXT, encoding="utf-8") as f:
        p.write_text(f.read()[:50000], encoding="utf-8")
    return p


def quantize(model, out, method, *extra, mpi=0):
    return run("quantize", "--model", model, "--output", out, "--method", method, "--backend", "cpu", "--quiet",
               "--group-size", "32", *extra, mpi=mpi)


# ---- --smoothquant ----

@pytest.mark.parametrize("value", ["0x1", " 0.5", "1e-400"])
def test_smoothquant_takes_a_plain_decimal_only(tmp_path, calib, value):
    out = tmp_path / "out"
    r = run("quantize", "--model", tiny(tmp_path), "--output", out, "--method", "rtn", "--backend", "cpu", "--quiet",
            "--scheme", "w8a8-int8", "--calib", calib, "--nsamples", "2", "--seqlen", "16", "--smoothquant", value)
    assert r.returncode == 2, r.stderr
    one_line(r, "error", "--smoothquant", repr(value).strip('"'))
    nothing_written(tmp_path, out)


@pytest.mark.parametrize("scheme", ["nvfp4a16", "mxfp4-w4a4"])
def test_smoothquant_is_refused_with_the_fp4_schemes(tmp_path, calib, scheme):
    out = tmp_path / "out"
    r = run("quantize", "--model", tiny(tmp_path), "--output", out, "--method", "rtn", "--backend", "cpu", "--quiet",
            "--scheme", scheme, "--calib", calib, "--nsamples", "2", "--seqlen", "16", "--smoothquant", "0.5")
    assert r.returncode == 2, r.stderr
    one_line(r, "error", "--smoothquant", scheme, "w8a8-int8")
    nothing_written(tmp_path, out)


# ---- --expert-parallel on where it cannot act ----

@pytest.mark.parametrize("case", ["one rank", "dense, 2 ranks", "rtn, 2 ranks", "awq, 2 ranks"])
def test_expert_parallel_on_where_it_cannot_act_is_refused(tmp_path, calib, case):
    model = tiny(tmp_path, moe=not case.startswith("dense"))
    method = case.split(",")[0] if case[:3] in ("rtn", "awq") else "gptq"
    out = tmp_path / "out"
    r = quantize(model, out, method, "--calib", calib, "--nsamples", "4", "--seqlen", "16", "--expert-parallel", "on",
                 mpi=0 if case == "one rank" else 2)
    assert r.returncode == 2, r.stderr
    want = {"one rank": "one rank", "dense, 2 ranks": "no experts (config.json)", "rtn, 2 ranks": "RTN",
            "awq, 2 ranks": "AWQ"}[case]
    one_line(r, "error", "--expert-parallel on", want)
    nothing_written(tmp_path, out)


# ---- recipe overrides that find no Linear ----

@pytest.mark.parametrize("moe,pattern", [(False, "layers\\.99\\.mlp"), (False, "down_projj$"),
                                         (True, "experts\\.7\\.w2$")])
def test_an_override_that_finds_no_linear_is_named(tmp_path, moe, pattern):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"overrides": [{"match": "self_attn\\.o_proj$", "bits": 8},
                                                {"match": pattern, "bits": 8}]}))
    out = tmp_path / "out"
    r = quantize(tiny(tmp_path, moe=moe), out, "rtn", "--recipe", recipe, "--format", "fake")
    assert r.returncode == 0, r.stderr
    # the run is right (the override has nothing to change), but the user hears of it, once
    one_line(r, "warning", recipe, "overrides[1]", pattern, "finds no Linear")
    assert not qdist_lines(r, "error")
    assert (out / "model.safetensors").exists()


# ---- AWQ over ranks where a rank holds no rows of a Linear ----

@pytest.mark.parametrize("moe,ranks,extra", [(False, 2, []),  # 1 chunk of 8 sequences: rank 1 has none
                                             (True, 3, ["--chunk-tokens", "32", "--numerics", "exact"])])
def test_awq_with_a_rank_holding_no_rows_gives_the_one_rank_bytes(tmp_path, calib, moe, ranks, extra):
    """found by the sweep (--expert-parallel on with awq on 2 ranks): a rank that held no calibration
    chunk (or, MoE, no token of an expert) took the cached input's width from its first rows, so it
    summed 0 values where the others summed K: an MPI error on 2 ranks, a hang on 3 (MoE)"""
    model = tiny(tmp_path, moe=moe)
    args = ["--calib", calib, "--nsamples", "3" if moe else "8", "--seqlen", "32" if moe else "16", "--format", "fake",
            *extra]
    one = quantize(model, tmp_path / "one", "awq", *args)
    assert one.returncode == 0, one.stderr
    r = quantize(model, tmp_path / "many", "awq", *args, mpi=ranks)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "many" / "model.safetensors").read_bytes() == (tmp_path / "one" / "model.safetensors").read_bytes()


# ---- one line, not one per rank ----

@pytest.mark.parametrize("args,needle", [(["--collectives", "nccl"], "--collectives nccl"),
                                         (["--scheme", "nvfp4", "--bits", "3"], "--bits")])
def test_a_usage_error_under_mpirun_is_one_line(tmp_path, args, needle):
    """every rank parses the same command line: rank 0 alone reports it (each rank printed it before)"""
    out = tmp_path / "out"
    r = quantize(tiny(tmp_path), out, "gptq", *args, mpi=2)
    assert r.returncode == 2, r.stderr
    one_line(r, "error", needle)
    nothing_written(tmp_path, out)


# ---- inspect of a checkpoint whose FP8 Linear lost its scale ----

def drop_tensor(path, name):
    """rewrite a safetensors file without one tensor (bytes moved as stored: no dtype support needed)"""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    head, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    del head[name]
    out, new = bytearray(), {"__metadata__": head.pop("__metadata__", {})}
    for k, v in sorted(head.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = v["data_offsets"]
        new[k] = dict(v, data_offsets=[len(out), len(out) + b - a])
        out += data[a:b]
    h = json.dumps(new).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(len(h).to_bytes(8, "little") + h + bytes(out))


@pytest.mark.parametrize("vllm_tp", [[], ["--vllm-tp", "2"]])
def test_inspect_of_an_fp8_export_without_a_scale_fails_once(tmp_path, vllm_tp):
    """inspect printed 'error:' and exited 0 (the listing is still shown); with --vllm-tp it printed the line twice"""
    exp = tmp_path / "exp"
    r = run("quantize", "--model", tiny(tmp_path), "--output", exp, "--method", "rtn", "--backend", "cpu", "--quiet",
            "--scheme", "fp8-dynamic")
    assert r.returncode == 0, r.stderr
    assert run("inspect", exp, *vllm_tp).returncode == 0
    drop_tensor(exp / "model.safetensors", "model.layers.1.mlp.down_proj.weight_scale")
    r = run("inspect", exp, *vllm_tp)
    assert r.returncode == 1, r.stderr
    one_line(r, "error", "model.layers.1.mlp.down_proj", "weight_scale")
    assert "architecture" in r.stdout  # the listing is still shown


# ---- an fp4 export whose config.json no longer describes its tensors ----

@pytest.mark.parametrize("scheme,group_size", [("nvfp4a16", 32), ("mxfp4", 16), ("nvfp4", 0)])
def test_an_fp4_export_whose_config_says_another_group_size_is_refused(tmp_path, calib, scheme, group_size):
    """eval read the packed tensors and printed a perplexity whatever group_size config.json gave (vLLM
    and compressed-tensors read the config); inspect --vllm-tp reported on it"""
    exp = tmp_path / "exp"
    r = run("quantize", "--model", tiny(tmp_path), "--output", exp, "--method", "rtn", "--backend", "cpu", "--quiet",
            "--scheme", scheme, "--calib", calib, "--nsamples", "2", "--seqlen", "16")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((exp / "config.json").read_text())
    cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] = group_size
    (exp / "config.json").write_text(json.dumps(cfg))
    for cmd in (["eval", "--model", exp, "--data", TEXT, "--seqlen", "32", "--max-windows", "1", "--backend", "cpu"],
                ["inspect", exp, "--vllm-tp", "2"]):
        r = run(*cmd)
        assert r.returncode == 1, (cmd[0], r.stderr)
        one_line(r, "error", exp / "config.json", f"group_size {group_size}")
        assert "ppl" not in r.stdout
