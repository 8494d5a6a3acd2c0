# SPDX-License-Identifier: MIT
"""Mixture-of-experts models (issue 19): Mixtral, Qwen2-MoE (shared expert, mlp_only_layers), Qwen3-MoE.

Tiny random checkpoints of each are built here with transformers (the stories260K tokenizer, so
`qdist eval` can tokenise text). Checked:
- qdist's fp32 logits against transformers' (relative error <= 1e-5);
- GPTQ and RTN to the fake format, then `qdist export` to compressed-tensors, loaded back by
  transformers: its logits equal those of transformers running qdist's fake-quant weights, and
  `qdist eval` of the same export gives the same logits (<= 1e-5);
- the report lists every expert Linear with its routed token count (summing to tokens x top_k);
- an expert the router can never pick gets 0 routed tokens, the --moe-min-tokens fallback in the
  report, finite weights, and a finite output; --moe-calibration all quantizes it from every token;
- the router gates stay in full precision and are listed in the export's "ignore";
- AWQ (the MoE mappings of docs/numerics.md): its scales alone (QD_AWQ_SMOOTH_ONLY) leave the logits
  unchanged, the router and shared_expert_gate carrying the norm's scales; its exports (compressed-tensors
  in transformers, GPTQ and AWQ formats in qdist) equal its fake-quant; an unreachable expert takes the
  all-token statistics and is reported; two ranks give the one-rank bytes; with outlier channels it is
  closer to the full-precision logits than RTN;
- --expert-parallel on (experts solved whole by owner ranks, 2 and 3 ranks, kill + resume) gives the
  one-rank bytes and expert statistics.
"""
import json
import os
import re

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

import qdtest as qt
from qdtest import IDS, hf_logits, qdist, qdist_logits, rel

ARCHS = ["mixtral", "qwen2_moe", "qwen3_moe"]
COMMON = dict(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
              tie_word_embeddings=False)


def build(arch, out, unreachable=None, **over):
    """A tiny random checkpoint; unreachable=e: expert e of block 0 can never be routed to (hidden dim 0 of
    block 0's MLP input is always positive, and the router row of e is -1000 there, 0 elsewhere).
    over: config fields replacing the defaults (e.g. hidden_size, moe_intermediate_size)."""
    def kw(**d):
        return {**d, **COMMON, **over}

    if arch == "mixtral":
        cfg = transformers.MixtralConfig(**kw(num_local_experts=4, num_experts_per_tok=2))
        cls = transformers.MixtralForCausalLM
    elif arch == "qwen2_moe":  # block 1 dense (mlp_only_layers), a shared expert behind its sigmoid gate
        cfg = transformers.Qwen2MoeConfig(**kw(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                                               shared_expert_intermediate_size=64, decoder_sparse_step=1,
                                               mlp_only_layers=[1]))
        cls = transformers.Qwen2MoeForCausalLM
    else:
        cfg = transformers.Qwen3MoeConfig(**kw(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                                               norm_topk_prob=True))
        cls = transformers.Qwen3MoeForCausalLM
    m = qt.tiny_random(cls, cfg)
    with torch.no_grad():
        if unreachable is not None:
            m.model.embed_tokens.weight[:, 0] = 50.0
            m.model.layers[0].self_attn.o_proj.weight[0, :] = 0.0
            moe = m.model.layers[0].mlp  # transformers 5 names Mixtral's block_sparse_moe "mlp" in memory
            moe.gate.weight[unreachable, :] = 0.0
            moe.gate.weight[unreachable, 0] = -1000.0
    return qt.save_tiny(m, out)


def calib(tmp):
    return qt.text_file(tmp / "calib.txt", 200000)


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_matches_transformers(arch, tmp_path):
    qt.forward_matches_transformers(build(arch, tmp_path / "src"), tmp_path, arch)


def expert_records(report):
    return {k: v for k, v in report["modules"].items() if ".experts." in k}


@pytest.mark.parametrize("method", ["gptq", "rtn", "awq"])
@pytest.mark.parametrize("arch", ARCHS)
def test_quantize_export_loads_in_transformers(arch, method, tmp_path):
    src = build(arch, tmp_path / "src")
    fake, ct = tmp_path / "fake", tmp_path / "ct"
    # symmetric: transformers' loader of fused experts refuses compressed-tensors zero points
    qargs = ["--calib", calib(tmp_path), "--nsamples", 8, "--seqlen", 64, "--method", method, "--bits", 4,
             "--group-size", 32, "--format", "fake", "--quiet"]
    qdist("quantize", "--model", src, "--output", fake, *qargs, *(["--sym"] if method == "awq" else []))
    qdist("export", "--input", fake, "--output", ct, "--format", "compressed-tensors")
    qc = json.loads((ct / "config.json").read_text())["quantization_config"]
    router = "block_sparse_moe.gate" if arch == "mixtral" else "mlp.gate"
    assert f"model.layers.0.{router}" in qc["ignore"]
    if arch == "qwen2_moe":
        assert "model.layers.0.mlp.shared_expert_gate" in qc["ignore"]
        assert "model.layers.0.mlp.shared_expert.down_proj" not in qc["ignore"]
    report = json.loads((fake / "qdist_report.json").read_text())
    experts = expert_records(report)
    moe_blocks = 1 if arch == "qwen2_moe" else 2
    assert len(experts) == moe_blocks * 4 * 3
    if method != "rtn":  # every token reaches top_k = 2 experts
        for b in range(moe_blocks):
            counts = {v["expert"]: v["expert_tokens"] for k, v in experts.items() if k.startswith(f"model.layers.{b}.")}
            assert sum(counts.values()) == 8 * 64 * 2
    # transformers with qdist's fake-quant weights (the fake dir's .weight) is the reference
    ref = hf_logits(fake, IDS)
    got = hf_logits(ct, IDS)
    assert np.isfinite(got).all()
    err = rel(got, ref)
    print(arch, method, "compressed-tensors vs fake", err)
    assert err <= 1e-5
    # qdist reads its own export back with the same forward
    ids, ours = qdist_logits(ct, tmp_path, "dump")
    assert rel(ours, hf_logits(ct, list(ids))[:-1]) <= 1e-5
    if method == "awq":  # the AWQ format (4-bit, zero points: an asymmetric run) read back by qdist: the same weights
        fake_asym, aw = tmp_path / "fake_asym", tmp_path / "awq"
        qdist("quantize", "--model", src, "--output", fake_asym, *qargs)
        qdist("export", "--input", fake_asym, "--output", aw, "--format", "awq")
        qc = json.loads((aw / "config.json").read_text())["quantization_config"]
        assert qc["quant_method"] == "awq" and f"model.layers.0.{router}" in qc["modules_to_not_convert"]
        _, from_awq = qdist_logits(aw, tmp_path, "dump_awq")
        _, from_fake = qdist_logits(fake_asym, tmp_path, "dump_fake_awq")
        assert rel(from_awq, from_fake) <= 1e-6
    if method != "rtn":  # GPTQ: the router excluded as the GPTQ loaders read it, and the same weights
        gq = tmp_path / "gptq"
        qdist("export", "--input", fake, "--output", gq, "--format", "gptq")
        qc = json.loads((gq / "config.json").read_text())["quantization_config"]
        assert f"-:^model\\.layers\\.0\\.{router.replace('.', chr(92) + '.')}$" in qc["dynamic"]
        inner = qc["modules_in_block_to_quantize"][0]
        assert router not in inner and "self_attn.q_proj" in inner
        assert any(".experts.3." in m for m in inner)
        _, from_gptq = qdist_logits(gq, tmp_path, "dump_gptq")
        _, from_fake = qdist_logits(fake, tmp_path, "dump_fake")
        assert rel(from_gptq, from_fake) <= 1e-6


@pytest.mark.parametrize("arch,method", [("mixtral", "gptq"), ("qwen3_moe", "gptq"), ("qwen3_moe", "awq")])
def test_unreachable_expert_falls_back(arch, method, tmp_path):
    src = build(arch, tmp_path / "src", unreachable=2)
    ids, ours = qdist_logits(src, tmp_path, "fp")  # the checkpoint is still computed like transformers
    assert rel(ours, hf_logits(src, list(ids))[:-1]) <= 1e-5
    prefix = "block_sparse_moe.experts.2.w" if arch == "mixtral" else "mlp.experts.2."
    cal = calib(tmp_path)
    for mode in ["routed", "all"]:
        out = tmp_path / mode
        qdist("quantize", "--model", src, "--output", out, "--calib", cal, "--nsamples", 8, "--seqlen", 64,
              "--method", method, "--bits", 4, "--group-size", 32, "--format", "fake", "--moe-calibration", mode,
              "--moe-min-tokens", 4, "--quiet")
        report = json.loads((out / "qdist_report.json").read_text())
        assert report["settings"]["moe_calibration"] == mode
        mods = {k: v for k, v in report["modules"].items() if k.startswith("model.layers.0." + prefix)}
        assert len(mods) == 3  # gate, up, down of the unreachable expert: all quantized and reported
        for v in mods.values():
            assert v["expert"] == 2 and v["expert_tokens"] == 0 and np.isfinite(v["loss"])
            if mode == "routed":
                what = "all-token Hessian" if method == "gptq" else "all-token AWQ statistics"
                assert what in v["fallback"] and "--moe-min-tokens 4" in v["fallback"]
            else:
                assert v["fallback"] is None
        counts = {v["expert"]: v["expert_tokens"] for k, v in expert_records(report).items()
                  if k.startswith("model.layers.0.")}
        assert counts[2] == 0 and sum(counts.values()) == 8 * 64 * 2
        t = load_file(str(out / "model.safetensors"))
        for k, w in t.items():
            assert np.isfinite(w.astype(np.float64)).all(), k
        logits = hf_logits(out, IDS)
        assert np.isfinite(logits).all()


def test_all_expert_calibration_changes_only_partly_routed_experts(tmp_path):
    src = build("qwen3_moe", tmp_path / "src")
    cal = calib(tmp_path)
    out = {}
    for mode in ["routed", "all"]:
        qdist("quantize", "--model", src, "--output", tmp_path / mode, "--calib", cal, "--nsamples", 8, "--seqlen", 64,
              "--method", "gptq", "--bits", 4, "--group-size", 32, "--format", "fake", "--moe-calibration", mode,
              "--moe-min-tokens", 0, "--quiet")
        out[mode] = load_file(str(tmp_path / mode / "model.safetensors"))
        report = json.loads((tmp_path / mode / "qdist_report.json").read_text())
        assert all(v["fallback"] is None for v in expert_records(report).values())
    counts = {v["expert"]: v["expert_tokens"] for k, v in expert_records(report).items() if k.startswith("model.layers.0.")}
    partial = [e for e, n in counts.items() if 0 < n < 8 * 64]
    assert partial
    for e in partial:  # its Hessians now hold every token, not only the routed ones
        key = f"model.layers.0.mlp.experts.{e}.gate_proj.weight"
        assert not np.array_equal(out["routed"][key], out["all"][key]), key
    # attention comes before the experts: the same bits either way
    key = "model.layers.0.self_attn.q_proj.weight"
    assert np.array_equal(out["routed"][key], out["all"][key])


@pytest.mark.parametrize("arch", ARCHS)
def test_awq_scales_alone_keep_the_function(arch, tmp_path):
    """AWQ's scales with nothing quantized (QD_AWQ_SMOOTH_ONLY): the norms, the up projections and the
    routers are rescaled, yet transformers computes the source's logits; the router's columns carry
    exactly the post-attention norm's scales, so the routing is unchanged."""
    src = build(arch, tmp_path / "src")
    out = tmp_path / "smooth"
    qdist("quantize", "--model", src, "--output", out, "--calib", calib(tmp_path), "--nsamples", "8", "--seqlen", "64",
          "--method", "awq", "--group-size", "32", "--format", "fake", "--quiet",
          env=dict(os.environ, QD_AWQ_SMOOTH_ONLY="1"))
    a, b = load_file(str(src / "model.safetensors")), load_file(str(out / "model.safetensors"))
    pre = "model.layers.0." + ("block_sparse_moe" if arch == "mixtral" else "mlp")
    ln = "model.layers.0.post_attention_layernorm.weight"
    assert not np.array_equal(a[ln], b[ln]) and not np.array_equal(a[pre + ".gate.weight"], b[pre + ".gate.weight"])
    s = a[ln].astype(np.float64) / b[ln].astype(np.float64)
    folded = [pre + ".gate.weight"] + (["model.layers.0.mlp.shared_expert_gate.weight"] if arch == "qwen2_moe" else [])
    for k in folded:
        assert np.allclose(b[k].astype(np.float64), a[k].astype(np.float64) * s[None, :], rtol=1e-5, atol=1e-7), k
    err = rel(hf_logits(out, IDS), hf_logits(src, IDS))
    print(arch, "smoothed vs source", err)
    assert err <= 1e-5


def test_awq_beats_rtn_with_outlier_channels(tmp_path):
    """a few input channels of every norm 20x larger (activation outliers, as in trained models): AWQ's
    scaled experts keep the logits much closer to the full-precision ones than RTN at the same bits and
    zero points; GPTQ is checked against RTN on the trained fixture (docs/quality.md)"""
    from safetensors.torch import load_file as load_torch, save_file
    src = build("qwen3_moe", tmp_path / "src")
    d = load_torch(str(src / "model.safetensors"))
    for b in range(2):
        for n in ("input_layernorm", "post_attention_layernorm"):
            d[f"model.layers.{b}.{n}.weight"][[3, 17, 40]] = 20.0
    save_file(d, str(src / "model.safetensors"), metadata={"format": "pt"})
    ref, err = hf_logits(src, IDS), {}
    for method in ["awq", "rtn"]:
        out = tmp_path / method
        qdist("quantize", "--model", src, "--output", out, "--calib", calib(tmp_path), "--nsamples", 8, "--seqlen", 64,
              "--method", method, "--bits", 4, "--group-size", 32, "--asym", "--format", "fake", "--quiet")
        err[method] = rel(hf_logits(out, IDS), ref)
    print("logit error vs full precision", err)
    assert err["awq"] < 0.8 * err["rtn"]


def test_awq_two_ranks_give_the_one_rank_bytes(tmp_path):
    """AWQ of an MoE model over two data-parallel ranks (exact numerics, several chunks a rank): the
    experts' routed rows are split unevenly between the ranks and between the chunks, and every
    statistic is folded per chunk in chunk order, so the checkpoint is the one-rank one"""
    src = build("qwen2_moe", tmp_path / "src")
    base = ["quantize", "--model", str(src), "--calib", str(calib(tmp_path)), "--nsamples", "8", "--seqlen", "64",
            "--method", "awq", "--group-size", "32", "--format", "fake", "--numerics", "exact", "--chunk-tokens",
            "128", "--quiet"]
    qdist(*base, "--output", tmp_path / "one")
    qt.mpirun(2, *base, "--output", tmp_path / "two")
    assert (tmp_path / "two" / "model.safetensors").read_bytes() == (tmp_path / "one" / "model.safetensors").read_bytes()
    counts = [{k: v["expert_tokens"] for k, v in expert_records(json.loads((tmp_path / d / "qdist_report.json")
                                                                             .read_text())).items()}
              for d in ["one", "two"]]
    assert counts[0] == counts[1] and sum(n for k, n in counts[0].items() if k.endswith("gate_proj")) == 8 * 64 * 2


def test_data_parallel_and_resume_give_the_same_bits(tmp_path):
    """Two data-parallel ranks (exact numerics) and a run killed after block 0 then resumed produce the
    one-rank checkpoint; the experts' routed counts are summed over the ranks and kept in the staging."""
    src = build("qwen2_moe", tmp_path / "src")
    base = ["quantize", "--model", str(src), "--calib", str(calib(tmp_path)), "--nsamples", "8", "--seqlen", "64",
            "--group-size", "32", "--format", "fake", "--numerics", "exact", "--chunk-tokens", "128", "--quiet"]
    qdist(*base, "--output", tmp_path / "one")
    qt.mpirun(2, *base, "--output", tmp_path / "two")
    env = dict(os.environ, QD_INJECT_KILL="0:0")
    r = qdist(*base, "--output", tmp_path / "res", ok=False, env=env)
    assert r.returncode != 0
    qdist(*base, "--output", tmp_path / "res", "--resume")
    one = (tmp_path / "one" / "model.safetensors").read_bytes()
    counts = {}
    for d in ["one", "two", "res"]:
        assert (tmp_path / d / "model.safetensors").read_bytes() == one, d
        report = json.loads((tmp_path / d / "qdist_report.json").read_text())
        counts[d] = {k: v["expert_tokens"] for k, v in expert_records(report).items()}
        assert sum(n for k, n in counts[d].items() if k.endswith("gate_proj")) == 8 * 64 * 2
    assert counts["one"] == counts["two"] == counts["res"]


def expert_stats(out):
    """every expert Linear's record without its timing and staging rank"""
    report = json.loads((out / "qdist_report.json").read_text())
    return {k: {f: x for f, x in v.items() if f not in ("seconds", "rank")} for k, v in expert_records(report).items()}


@pytest.mark.parametrize("mode,min_tokens,numerics", [("routed", 4, "fast"), ("routed", 0, "exact"), ("all", 4, "exact")])
def test_expert_parallel_gives_the_one_rank_bytes(mode, min_tokens, numerics, tmp_path):
    """--expert-parallel on over 2 and 3 ranks (4 chunks: shares 2/2 and 1/1/2): every expert solved whole
    by its owner from rows sent there, in chunk order, so the checkpoint is the one-rank checkpoint and
    every expert's loss, routed count and fallback are the one-rank ones to the last bit (the row-split
    solve of data parallelism sums its losses per rank instead). Expert 2 of block 0 is unreachable: 0
    routed tokens (min_tokens 4: the all-token fallback; 0: solved from an empty Hessian). Exact numerics
    fold the chunks' Hessians in fp32 in chunk order: a wrong order would show."""
    src = build("mixtral", tmp_path / "src", unreachable=2)
    base = ["quantize", "--model", src, "--calib", calib(tmp_path), "--nsamples", 8, "--seqlen", 64, "--group-size", 32,
            "--format", "fake", "--chunk-tokens", 128, "--moe-calibration", mode, "--moe-min-tokens", min_tokens,
            "--numerics", numerics]
    qdist(*base, "--output", tmp_path / "one", "--quiet")
    one = (tmp_path / "one" / "model.safetensors").read_bytes()
    ref = expert_stats(tmp_path / "one")
    assert ref["model.layers.0.block_sparse_moe.experts.2.w1"]["expert_tokens"] == 0
    for n in [2, 3]:
        out = tmp_path / f"ep{n}"
        r = qt.mpirun(n, *base, "--output", out, "--expert-parallel", "on")
        assert "expert parallel on (--expert-parallel on)" in r.stderr
        # rank 0 logs the experts the other ranks solved: every rank owns some of the 4 experts
        assert {int(x) for x in re.findall(r"solved by rank (\d+)", r.stderr)} == set(range(1, n)), r.stderr
        assert (out / "model.safetensors").read_bytes() == one, n
        assert expert_stats(out) == ref, n


def test_expert_parallel_resume_and_usage(tmp_path):
    """Two ranks with --expert-parallel on, one killed after block 0 is staged, then resumed: the
    one-rank bytes. --expert-parallel on with the pipeline layout is a usage error before any work."""
    src = build("qwen2_moe", tmp_path / "src")
    base = ["quantize", "--model", src, "--calib", calib(tmp_path), "--nsamples", 8, "--seqlen", 64, "--group-size", 32,
            "--format", "fake", "--chunk-tokens", 128, "--quiet"]
    qdist(*base, "--output", tmp_path / "one")
    env = dict(os.environ, QD_INJECT_KILL="1:0")
    r = qt.mpirun(2, *base, "--output", tmp_path / "res", "--expert-parallel", "on", ok=False, env=env,
                  pass_env=["QD_INJECT_KILL"])
    assert r.returncode != 0
    r = qt.mpirun(2, *base, "--output", tmp_path / "res", "--expert-parallel", "on", "--resume")
    assert (tmp_path / "res" / "model.safetensors").read_bytes() == (tmp_path / "one" / "model.safetensors").read_bytes()
    r = qdist(*base, "--output", tmp_path / "p", "--expert-parallel", "on", "--parallel", "pipeline", ok=False,
              timeout=120)
    qt.one_line_error(r, 2, "--expert-parallel on", "--parallel pipeline")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("nsamples", [4, 16])
def test_expert_parallel_auto_compares_the_bytes_moved(nsamples, tmp_path):
    """--expert-parallel auto (the default) on 2 ranks: expert parallel when the routed rows that leave
    their rank, T k (H + I) fp32 x (P-1)/P, are fewer bytes than the experts' fp64 Hessian sums,
    E (H^2 + I^2) x 8 (qwen3_moe here: E 4, H 64, I 64, k 2)."""
    src = build("qwen3_moe", tmp_path / "src")
    E, H, I, k, P, T = 4, 64, 64, 2, 2, nsamples * 64
    want = "on" if T * k * (H + I) * 4 * (P - 1) / P < E * (H * H + I * I) * 8 else "off"
    assert want == ("on" if nsamples == 4 else "off")
    r = qt.mpirun(P, "quantize", "--model", src, "--calib", calib(tmp_path), "--nsamples", nsamples, "--seqlen", 64,
                  "--group-size", 32, "--format", "fake", "--output", tmp_path / "o")
    assert f"expert parallel {want} (--expert-parallel auto)" in r.stderr


def test_recipe_skips_shared_expert_and_gives_experts_other_bits(tmp_path):
    """A recipe matches the experts by their Hugging Face names: the shared expert stays in full
    precision (listed in "ignore"), the routed experts' down projections get 8 bits."""
    src = build("qwen2_moe", tmp_path / "src")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"method": "gptq", "bits": 4, "group_size": 32, "overrides": [
        {"match": "mlp\\.shared_expert\\.", "skip": True},
        {"match": "mlp\\.experts\\.[0-9]+\\.down_proj$", "bits": 8}]}))
    out = tmp_path / "ct"
    qdist("quantize", "--model", src, "--output", out, "--calib", calib(tmp_path), "--nsamples", 8, "--seqlen", 64,
          "--recipe", recipe, "--format", "compressed-tensors", "--quiet")
    report = json.loads((out / "qdist_report.json").read_text())["modules"]
    assert not any("shared_expert" in k for k in report)
    assert all(v["bits"] == (8 if k.endswith("down_proj") else 4) for k, v in expert_records({"modules": report}).items())
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    for m in ["gate_proj", "up_proj", "down_proj"]:
        assert f"model.layers.0.mlp.shared_expert.{m}" in qc["ignore"]
    ids, ours = qdist_logits(out, tmp_path, "dump")
    assert np.isfinite(ours).all()


def test_expert_batches_give_the_same_bits(tmp_path):
    """QD_MOE_HESS_MIB=1 holds one expert's Hessians at a time (widths 512: 3 MB each with the fp64 sums), so
    each MLP stage runs one forward per batch of experts; the checkpoint equals the all-at-once run with routed
    calibration (some experts below --moe-min-tokens, taking the all-token factorization), with all-expert
    calibration, and with two data-parallel ranks (exact numerics) against one."""
    src = build("qwen2_moe", tmp_path / "src", hidden_size=512, moe_intermediate_size=512)
    base = ["quantize", "--model", str(src), "--calib", str(calib(tmp_path)), "--nsamples", "4", "--seqlen", "64",
            "--group-size", "32", "--format", "fake", "--progress", "none"]
    batched = dict(os.environ, QD_MOE_HESS_MIB="1")

    def run(out, extra, env=None, ranks=1):
        return qt.mpirun(ranks, *base, "--output", out, *extra, env=env, timeout=300).stderr

    for mode, extra in [("routed", ["--moe-min-tokens", "128"]), ("all", [])]:
        flags = ["--moe-calibration", mode, *extra]
        run(tmp_path / f"{mode}-one", flags)
        log = run(tmp_path / f"{mode}-batched", flags, batched)
        assert "block 0: 4 experts' down Hessians in 4 passes of at most 1" in log, log
        if mode == "routed":  # some experts fell back, the others took routed passes of their own
            assert "gate/up Hessians in" in log, log
            report = json.loads((tmp_path / "routed-batched" / "qdist_report.json").read_text())
            fell = {v["expert"] for v in expert_records(report).values() if v["fallback"]}
            assert 0 < len(fell) < 4, fell
        one = (tmp_path / f"{mode}-one" / "model.safetensors").read_bytes()
        assert (tmp_path / f"{mode}-batched" / "model.safetensors").read_bytes() == one, mode
    exact = ["--numerics", "exact", "--chunk-tokens", "128", "--moe-min-tokens", "128"]
    run(tmp_path / "exact-one", exact)
    run(tmp_path / "exact-two", exact, batched, ranks=2)
    assert ((tmp_path / "exact-two" / "model.safetensors").read_bytes() ==
            (tmp_path / "exact-one" / "model.safetensors").read_bytes())
