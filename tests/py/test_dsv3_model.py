# SPDX-License-Identifier: MIT
"""DeepseekV3ForCausalLM end to end (issue 19): MLA attention (q_lora_rank set and null), YaRN rope,
first_k_dense_replace = 1 dense block then MoE blocks with shared experts, sigmoid group-limited routing
(n_group 4, topk_group 2) with a random e_score_correction_bias, routed_scaling_factor.

Tiny random checkpoints are built here with transformers (the stories260K tokenizer). Checked:
- qdist's fp32 logits against transformers' (relative error <= 1e-5);
- GPTQ and RTN to the fake format, then compressed-tensors (and GPTQ): loaded back by transformers, the
  logits equal transformers' on qdist's fake-quant weights; the router and its e_score_correction_bias
  stay in full precision and the router is in the export's "ignore";
- the multi-token prediction block (model.layers.<num_hidden_layers>.*) is copied through untouched;
- an FP8 source (block-128 e4m3 Linears, as DeepSeek-V3 ships) quantizes end to end, its FP8 multi-token
  prediction block exported in bf16 (equal to the Python dequantization) without its scales;
- AWQ (input_layernorm -> q_a/q_proj + kv_a, q_a_layernorm -> q_b, kv_a_layernorm -> kv_b, the MoE
  mappings): its scales alone (QD_AWQ_SMOOTH_ONLY) leave the logits unchanged, the router carrying the
  norm's scales and the rescaled sub-norms written; its exports load like GPTQ's.
"""
import json
import os
import shutil

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_torch, save_file

import qdtest as qt
from qdtest import IDS, STORIES, TOKFILES, hf_logits, qdist, qdist_logits, rel

YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128, "beta_fast": 32, "beta_slow": 1,
        "mscale": 1.0, "mscale_all_dim": 1.0}
VARIANTS = {"q_lora": 32, "q_proj": None}


def config(q_lora, hidden=64, moe_inter=32):
    return transformers.DeepseekV3Config(
        vocab_size=512, hidden_size=hidden, intermediate_size=96, moe_intermediate_size=moe_inter, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_shared_experts=2, n_routed_experts=8, num_experts_per_tok=2,
        n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True, first_k_dense_replace=1,
        q_lora_rank=q_lora, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
        max_position_embeddings=512, rope_theta=10000.0, rope_scaling=dict(YARN), bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False, num_nextn_predict_layers=1)


def build(variant, out, **over):
    torch.manual_seed(0)
    m = transformers.DeepseekV3ForCausalLM(config(VARIANTS[variant], **over)).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.1)
            elif "layernorm" in name:
                p.uniform_(0.8, 1.2)
        for layer in m.model.layers:
            gate = getattr(layer.mlp, "gate", None)
            if gate is not None and hasattr(gate, "e_score_correction_bias"):
                gate.e_score_correction_bias.uniform_(-0.05, 0.05)
    return qt.save_tiny(m, out)


def add_mtp_block(src):
    """a multi-token prediction block after the decoder, as DeepSeek-V3 ships model.layers.61.*"""
    st = src / "model.safetensors"
    d = load_torch(str(st))
    n = json.loads((src / "config.json").read_text())["num_hidden_layers"]
    g = torch.Generator().manual_seed(5)
    mtp = {f"model.layers.{n}.eh_proj.weight": torch.randn(64, 128, generator=g),
           f"model.layers.{n}.enorm.weight": torch.ones(64),
           f"model.layers.{n}.self_attn.kv_a_proj_with_mqa.weight": torch.randn(40, 64, generator=g)}
    d.update(mtp)
    save_file(d, str(st), metadata={"format": "pt"})
    return mtp


def calib(tmp):
    return qt.text_file(tmp / "calib.txt", 200000)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_forward_matches_transformers(variant, tmp_path):
    qt.forward_matches_transformers(build(variant, tmp_path / "src"), tmp_path, variant)


@pytest.mark.parametrize("method", ["gptq", "rtn", "awq"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_quantize_export_loads_in_transformers(variant, method, tmp_path):
    src = build(variant, tmp_path / "src")
    mtp = add_mtp_block(src)
    fake, ct = tmp_path / "fake", tmp_path / "ct"
    # AWQ symmetric: transformers' loader of fused experts refuses compressed-tensors zero points
    qdist("quantize", "--model", src, "--output", fake, "--calib", calib(tmp_path), "--nsamples", 8, "--seqlen", 64,
          "--method", method, "--bits", 4, "--group-size", 32, "--format", "fake", "--quiet",
          *(["--sym"] if method == "awq" else []))
    qdist("export", "--input", fake, "--output", ct, "--format", "compressed-tensors")
    qc = json.loads((ct / "config.json").read_text())["quantization_config"]
    for b in (1, 2):
        assert f"model.layers.{b}.mlp.gate" in qc["ignore"]
    assert "model.layers.1.mlp.shared_experts.down_proj" not in qc["ignore"]
    report = json.loads((fake / "qdist_report.json").read_text())
    mods = report["modules"]
    attn = ["kv_a_proj_with_mqa", "kv_b_proj", "o_proj"] + (["q_a_proj", "q_b_proj"] if VARIANTS[variant] else
                                                           ["q_proj"])
    for b in range(3):
        for a in attn:
            assert f"model.layers.{b}.self_attn.{a}" in mods, (b, a)
    assert "model.layers.0.mlp.down_proj" in mods and "model.layers.0.mlp.gate" not in qc["ignore"]
    experts = {k: v for k, v in mods.items() if ".experts." in k and "shared" not in k}
    assert len(experts) == 2 * 8 * 3
    if method != "rtn":  # every token reaches top_k = 2 experts
        for b in (1, 2):
            counts = {v["expert"]: v["expert_tokens"] for k, v in experts.items() if k.startswith(f"model.layers.{b}.")}
            assert sum(counts.values()) == 8 * 64 * 2
    # the router (AWQ: with the norm's scales folded in), its bias and the MTP block are the source's bytes
    srcd, outd = load_file(str(src / "model.safetensors")), {}
    for f in ct.glob("*.safetensors"):
        outd.update(load_file(str(f)))
    kept = ("model.layers.2.mlp.gate.e_score_correction_bias", *mtp)
    for name in kept + (("model.layers.1.mlp.gate.weight",) if method != "awq" else ()):
        assert np.array_equal(outd[name], srcd[name]), name
    ref = hf_logits(fake, IDS)
    got = hf_logits(ct, IDS)
    assert np.isfinite(got).all()
    err = rel(got, ref)
    print(variant, method, "compressed-tensors vs fake", err)
    assert err <= 1e-5
    assert rel(got, hf_logits(src, IDS)) > 1e-4  # the 4-bit weights were loaded, not the source's
    ids, ours = qdist_logits(ct, tmp_path, "dump")
    assert rel(ours, hf_logits(ct, list(ids))[:-1]) <= 1e-5
    if method != "rtn":
        gq = tmp_path / "gptq"
        qdist("export", "--input", fake, "--output", gq, "--format", "gptq")
        qc = json.loads((gq / "config.json").read_text())["quantization_config"]
        assert "-:^model\\.layers\\.1\\.mlp\\.gate$" in qc["dynamic"]
        _, from_gptq = qdist_logits(gq, tmp_path, "dump_gptq")
        _, from_fake = qdist_logits(fake, tmp_path, "dump_fake")
        assert rel(from_gptq, from_fake) <= 1e-6


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_awq_scales_alone_keep_the_function(variant, tmp_path):
    """AWQ's scales with nothing quantized (QD_AWQ_SMOOTH_ONLY): every norm AWQ scales (the MLA sub-norms
    q_a_layernorm and kv_a_layernorm too) is written rescaled, the router's columns carry the
    post-attention norm's scales (its bias untouched), and transformers computes the source's logits"""
    src = build(variant, tmp_path / "src")
    out = tmp_path / "smooth"
    qdist("quantize", "--model", src, "--output", out, "--calib", calib(tmp_path), "--nsamples", "8", "--seqlen", "64",
          "--method", "awq", "--group-size", "32", "--format", "fake", "--quiet",
          env=dict(os.environ, QD_AWQ_SMOOTH_ONLY="1"))
    a, b = load_file(str(src / "model.safetensors")), load_file(str(out / "model.safetensors"))
    norms = ["input_layernorm", "post_attention_layernorm", "self_attn.kv_a_layernorm"] + (
        ["self_attn.q_a_layernorm"] if VARIANTS[variant] else [])
    for blk in range(3):
        for n in norms:
            k = f"model.layers.{blk}.{n}.weight"
            assert not np.array_equal(a[k], b[k]), k
    ln = "model.layers.1.post_attention_layernorm.weight"
    s = a[ln].astype(np.float64) / b[ln].astype(np.float64)
    g = "model.layers.1.mlp.gate.weight"
    assert np.allclose(b[g].astype(np.float64), a[g].astype(np.float64) * s[None, :], rtol=1e-5, atol=1e-7)
    bias = "model.layers.1.mlp.gate.e_score_correction_bias"
    assert np.array_equal(a[bias], b[bias])
    err = rel(hf_logits(out, IDS), hf_logits(src, IDS))
    print(variant, "smoothed vs source", err)
    assert err <= 1e-5


FP8_MAX = 448.0


def fp8_block(w):
    N, K = w.shape
    R, C = -(-N // 128), -(-K // 128)
    s = torch.ones(R, C)
    q = torch.empty(N, K, dtype=torch.float8_e4m3fn)
    for r in range(R):
        for c in range(C):
            blk = w[r * 128:(r + 1) * 128, c * 128:(c + 1) * 128]
            s[r, c] = max(blk.abs().max().item(), 1e-12) / FP8_MAX
            q[r * 128:(r + 1) * 128, c * 128:(c + 1) * 128] = (blk / s[r, c]).clamp(-FP8_MAX, FP8_MAX).to(
                torch.float8_e4m3fn)
    return q, s


@pytest.mark.parametrize("method", ["gptq", "rtn"])
def test_fp8_source_quantizes_end_to_end(method, tmp_path):
    """the Linears (routers and norms excepted, as DeepSeek-V3 ships them) in block-128 e4m3: qdist's forward
    of the source equals transformers' on the dequantized weights, and its 8-bit export, loaded by
    transformers, stays close to them"""
    src = build("q_lora", tmp_path / "bf")
    d = load_torch(str(src / "model.safetensors"))
    out, ref = {}, {}
    for name, w in d.items():
        linear = name.endswith("_proj.weight") or name.endswith("_proj_with_mqa.weight")
        if linear and name.startswith("model.layers."):
            q, s = fp8_block(w.float())
            out[name], out[name[:-len("weight")] + "weight_scale_inv"] = q, s
            big = s.repeat_interleave(128, 0).repeat_interleave(128, 1)[:w.shape[0], :w.shape[1]]
            ref[name] = q.float() * big
        else:
            out[name] = w.to(torch.bfloat16)
            ref[name] = out[name].float()
    # a multi-token prediction block after the decoder (model.layers.3), FP8 like DeepSeek-V3's: its e4m3
    # Linear weights are exported in bf16 (the Python dequantization, rounded), their scales dropped
    g = torch.Generator().manual_seed(7)
    mtp_ref = {"model.layers.3.enorm.weight": torch.rand(64, generator=g).to(torch.bfloat16)}
    for name, shape in [("model.layers.3.eh_proj.weight", (64, 128)),
                        ("model.layers.3.self_attn.kv_a_proj_with_mqa.weight", (40, 64))]:
        q, sc = fp8_block(torch.randn(*shape, generator=g) * 0.1)
        out[name], out[name[:-len("weight")] + "weight_scale_inv"] = q, sc
        big = sc.repeat_interleave(128, 0).repeat_interleave(128, 1)[:shape[0], :shape[1]]
        mtp_ref[name] = (q.float() * big).to(torch.bfloat16)
    out["model.layers.3.enorm.weight"] = mtp_ref["model.layers.3.enorm.weight"]
    fp8 = tmp_path / "fp8"
    fp8.mkdir()
    save_file(out, str(fp8 / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                  "weight_block_size": [128, 128]}
    (fp8 / "config.json").write_text(json.dumps(cfg))
    for f in TOKFILES:
        shutil.copy(STORIES / f, fp8)
    twin = tmp_path / "twin"  # the dequantized weights under the on-disk names, read by transformers' loader
    twin.mkdir()
    save_file(ref, str(twin / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(src / "config.json", twin)
    ids, ours = qdist_logits(fp8, tmp_path, "dump")
    assert rel(ours, hf_logits(twin, list(ids))[:-1]) <= 1e-5
    ct = tmp_path / "ct"
    qdist("quantize", "--model", fp8, "--output", ct, "--calib", calib(tmp_path), "--nsamples", 8, "--seqlen", 64,
          "--method", method, "--bits", 8, "--group-size", 32, "--format", "compressed-tensors", "--quiet")
    qc = json.loads((ct / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and "model.layers.1.mlp.gate" in qc["ignore"]
    exports = [ct]
    if method == "rtn":  # the fake format: the export from the staging after the run, not the streamed one
        qdist("quantize", "--model", fp8, "--output", tmp_path / "fake", "--calib", calib(tmp_path), "--nsamples", 2,
              "--seqlen", 32, "--method", "rtn", "--group-size", 32, "--format", "fake", "--quiet")
        exports.append(tmp_path / "fake")
    for d in exports:
        got = {}
        for f in d.glob("*.safetensors"):
            got.update(load_torch(str(f)))
        for name, want in mtp_ref.items():
            assert got[name].dtype == torch.bfloat16 and torch.equal(got[name], want), (d.name, name)
        assert not [n for n in got if n.endswith("weight_scale_inv")], "the FP8 scales must not reach the export"
    names = set()
    for f in ct.glob("*.safetensors"):
        names |= set(load_torch(str(f)))
    assert "model.layers.2.mlp.experts.7.down_proj.weight_packed" in names
    got = hf_logits(ct, IDS)
    assert np.isfinite(got).all()
    err = rel(got, hf_logits(twin, IDS))
    print(method, "w8 of the fp8 source vs its dequantized twin", err)
    assert err < 0.05


def test_data_parallel_and_resume_give_the_same_bits(tmp_path):
    """two data-parallel ranks (exact numerics) and a run killed after block 0 then resumed give the one-rank
    checkpoint: the MLA stages' Hessians (keys 0..3) and the experts' are reduced like the others; so do
    three ranks with --expert-parallel on (each expert solved by its owner, MLA's shifted stages)"""
    src = build("q_lora", tmp_path / "src")
    base = ["quantize", "--model", str(src), "--calib", str(calib(tmp_path)), "--nsamples", "8", "--seqlen", "64",
            "--group-size", "32", "--format", "fake", "--numerics", "exact", "--chunk-tokens", "128", "--quiet"]
    qdist(*base, "--output", tmp_path / "one")
    qt.mpirun(2, *base, "--output", tmp_path / "two")
    qt.mpirun(3, *base, "--output", tmp_path / "ep3", "--expert-parallel", "on")  # the experts solved by owner ranks
    env = dict(os.environ, QD_INJECT_KILL="0:0")
    r = qdist(*base, "--output", tmp_path / "res", ok=False, env=env)
    assert r.returncode != 0
    qdist(*base, "--output", tmp_path / "res", "--resume")
    one = (tmp_path / "one" / "model.safetensors").read_bytes()
    for d in ["two", "ep3", "res"]:
        assert (tmp_path / d / "model.safetensors").read_bytes() == one, d


def test_unreachable_expert_falls_back(tmp_path):
    """expert 5 of block 1 is never chosen (its correction bias is -1000: out of every top-k, its group's
    score too); routed calibration gives it the all-token Hessian (key 4 of the MLA table) and says so, and
    --moe-calibration all quantizes every expert from every token; weights and logits stay finite"""
    src = build("q_lora", tmp_path / "src")
    st = src / "model.safetensors"
    d = load_torch(str(st))
    d["model.layers.1.mlp.gate.e_score_correction_bias"][5] = -1000.0
    save_file(d, str(st), metadata={"format": "pt"})
    ids, ours = qdist_logits(src, tmp_path, "fp")
    assert rel(ours, hf_logits(src, list(ids))[:-1]) <= 1e-5
    for mode in ["routed", "all"]:
        out = tmp_path / mode
        qdist("quantize", "--model", src, "--output", out, "--calib", calib(tmp_path), "--nsamples", 8, "--seqlen", 64,
              "--method", "gptq", "--bits", 4, "--group-size", 32, "--format", "fake", "--moe-calibration", mode,
              "--moe-min-tokens", 4, "--quiet")
        mods = json.loads((out / "qdist_report.json").read_text())["modules"]
        five = {k: v for k, v in mods.items() if k.startswith("model.layers.1.mlp.experts.5.")}
        assert len(five) == 3
        for v in five.values():
            assert v["expert_tokens"] == 0 and np.isfinite(v["loss"])
            assert ("all-token Hessian" in (v["fallback"] or "")) == (mode == "routed")
        t = load_file(str(out / "model.safetensors"))
        assert all(np.isfinite(w.astype(np.float64)).all() for w in t.values())
        assert np.isfinite(hf_logits(out, IDS)).all()


def test_expert_batches_give_the_same_bits(tmp_path):
    """QD_MOE_HESS_MIB=1 holds one expert's Hessians at a time (hidden 512: 3 MB each with the fp64 sums): the
    MLA table's expert keys (6 + 2e, 7 + 2e) are solved batch by batch, the experts below --moe-min-tokens
    with the all-token key's one factorization, and the checkpoint equals the all-at-once run"""
    src = build("q_lora", tmp_path / "src", hidden=512, moe_inter=256)
    base = ["quantize", "--model", str(src), "--calib", str(calib(tmp_path)), "--nsamples", "4", "--seqlen", "64",
            "--group-size", "32", "--format", "fake", "--progress", "none", "--moe-min-tokens", "80"]
    outs = {}
    for name, env in [("one", None), ("batched", dict(os.environ, QD_MOE_HESS_MIB="1"))]:
        r = qdist(*base, "--output", tmp_path / name, env=env)
        outs[name] = (tmp_path / name / "model.safetensors").read_bytes()
    assert "block 1: 8 experts' down Hessians in 8 passes of at most 1" in r.stderr, r.stderr
    assert "block 1: 8 experts' gate/up Hessians in" in r.stderr, r.stderr
    mods = json.loads((tmp_path / "batched" / "qdist_report.json").read_text())["modules"]
    fell = {(k.split(".")[2], v["expert"]) for k, v in mods.items() if v.get("fallback")}
    assert 0 < len(fell) < 16, fell
    assert outs["batched"] == outs["one"]
