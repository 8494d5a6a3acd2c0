# SPDX-License-Identifier: MIT
"""DeepSeek-V3 pieces against transformers (issue 19): YaRN rope tables and attention scale,
a Llama with yarn rope_scaling end to end, the group-limited top-k routing, and the config checks.

qd-dsv3-tool (tests/forward/dsv3-tool.c) runs qdist's functions on files; transformers' own
functions (ROPE_INIT_FUNCTIONS["yarn"], yarn_apply_mscale, DeepseekV3TopkRouter) are the reference."""
import json
import subprocess

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, yarn_apply_mscale

import qdtest as qt
from qdtest import WIKI as TEXT
from qdtest import qdist

LLAMA = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=128, intermediate_size=192,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
             rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)

YARN = {
    "plain": (dict(head_dim=64, max_position_embeddings=512, rope_theta=10000.0),
              {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128}),
    "deepseek-v3": (dict(head_dim=64, max_position_embeddings=163840, rope_theta=10000.0),
                    {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                     "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}),
    "mscales-untruncated": (dict(head_dim=128, max_position_embeddings=65536, rope_theta=1000000.0),
                            {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8192,
                             "beta_fast": 16, "beta_slow": 2, "mscale": 0.707, "mscale_all_dim": 0.5,
                             "truncate": False}),
    "attention-factor": (dict(head_dim=32, max_position_embeddings=1024, rope_theta=500000.0),
                         {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 512,
                          "attention_factor": 1.3}),
}


def tool(*args):
    return subprocess.run([qt.tool("tests", "forward", "qd-dsv3-tool"), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def hf_config(sizes, rs):
    d = dict(LLAMA, **sizes, rope_scaling=rs)
    return transformers.LlamaConfig(**{k: v for k, v in d.items() if k not in ("architectures", "model_type")}), d


@pytest.mark.parametrize("case", sorted(YARN))
def test_yarn_tables_match_transformers(case, tmp_path):
    sizes, rs = YARN[case]
    cfg, d = hf_config(sizes, dict(rs))
    (tmp_path / "config.json").write_text(json.dumps(d))
    S = 300
    r = tool("rope", tmp_path / "config.json", S, tmp_path / "cos.bin", tmp_path / "sin.bin")
    assert r.returncode == 0, r.stderr
    inv, att = ROPE_INIT_FUNCTIONS["yarn"](cfg, "cpu")
    freqs = torch.arange(S, dtype=torch.float32)[:, None] * inv.float()[None, :]
    cos_ref, sin_ref = (freqs.cos() * att).numpy(), (freqs.sin() * att).numpy()
    half = sizes["head_dim"] // 2
    cos = np.fromfile(tmp_path / "cos.bin", dtype=np.float32).reshape(S, half)
    sin = np.fromfile(tmp_path / "sin.bin", dtype=np.float32).reshape(S, half)
    err = max(np.abs(cos - cos_ref).max(), np.abs(sin - sin_ref).max())
    print(f"{case}: attention_factor {att}, max |diff| {err:.2e}")
    assert err < 1e-5 * max(1.0, att)
    # DeepSeek's MLA softmax scale: qdist's multiplier against transformers' yarn_apply_mscale
    assert float(r.stdout) == pytest.approx(yarn_apply_mscale(cfg.rope_parameters, 1.0), rel=1e-12)


def test_yarn_llama_logits_match_transformers(tmp_path):
    sizes, rs = YARN["deepseek-v3"]
    cfg, d = hf_config(dict(sizes, max_position_embeddings=20480), dict(rs, original_max_position_embeddings=512))
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    src = tmp_path / "yarn"
    model.save_pretrained(str(src))
    d = json.loads((src / "config.json").read_text())
    assert (d.get("rope_parameters") or d.get("rope_scaling"))["rope_type"] == "yarn"
    qt.copy_tokenizer(src)
    qdist("eval", "--model", src, "--data", TEXT, "--seqlen", "256", "--max-windows", "1", "--dump-logits",
          tmp_path / "dump", timeout=300)
    dump = load_file(str(tmp_path / "dump" / "logits.safetensors"))
    ids, ours = dump["ids"].astype(np.int64), dump["logits"].astype(np.float64)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids)[None]).logits[0, :-1].double().numpy()
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    print(f"yarn llama: rel err {rel:.2e}")
    assert rel <= 1e-5


@pytest.mark.parametrize("bad,field", [
    ({"rope_type": "yarn", "factor": -2.0, "original_max_position_embeddings": 128}, "factor"),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 0}, "original_max_position_embeddings"),
    ({"rope_type": "yarn", "factor": 4.0, "beta_fast": "fast"}, "beta_fast"),
    ({"rope_type": "yarn", "factor": 4.0, "mscale": -1}, "mscale"),
])
def test_bad_yarn_field_is_named(bad, field, tmp_path):
    d = dict(LLAMA, head_dim=32, max_position_embeddings=512, rope_scaling=bad)
    (tmp_path / "config.json").write_text(json.dumps(d))
    r = tool("rope", tmp_path / "config.json", 4, tmp_path / "c", tmp_path / "s")
    assert r.returncode == 1 and field in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


ROUTES = {
    "v3-like": dict(n_routed_experts=32, num_experts_per_tok=8, n_group=8, topk_group=4, norm_topk_prob=True,
                    routed_scaling_factor=2.5),
    "unnormalised": dict(n_routed_experts=24, num_experts_per_tok=5, n_group=4, topk_group=3, norm_topk_prob=False,
                         routed_scaling_factor=1.0),
    "one-group": dict(n_routed_experts=8, num_experts_per_tok=2, n_group=1, topk_group=1, norm_topk_prob=True,
                      routed_scaling_factor=1.5),
}


@pytest.mark.parametrize("case", sorted(ROUTES))
def test_routing_matches_transformers(case, tmp_path):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter
    rc = ROUTES[case]
    H, T = 48, 257
    cfg = transformers.DeepseekV3Config(hidden_size=H, **rc)
    router = DeepseekV3TopkRouter(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        router.weight.copy_(torch.randn(rc["n_routed_experts"], H, generator=g))
        router.e_score_correction_bias.copy_(torch.rand(rc["n_routed_experts"], generator=g) * 0.5)
        x = torch.randn(T, H, generator=g)
        logits, w_ref, idx_ref = router(x)
    logits.numpy().astype(np.float32).tofile(tmp_path / "logits.bin")
    router.e_score_correction_bias.detach().numpy().astype(np.float32).tofile(tmp_path / "bias.bin")
    (tmp_path / "cfg.json").write_text(json.dumps(rc))
    r = tool("route", tmp_path / "cfg.json", T, tmp_path / "logits.bin", tmp_path / "bias.bin",
             tmp_path / "idx.bin", tmp_path / "w.bin")
    assert r.returncode == 0, r.stderr
    K = rc["num_experts_per_tok"]
    idx = np.fromfile(tmp_path / "idx.bin", dtype=np.int32).reshape(T, K)
    w = np.fromfile(tmp_path / "w.bin", dtype=np.float32).reshape(T, K)
    # transformers' topk is unsorted: compare each token's (expert, weight) pairs by expert
    oi, ri = np.argsort(idx, 1), np.argsort(idx_ref.numpy(), 1)
    np.testing.assert_array_equal(np.take_along_axis(idx, oi, 1), np.take_along_axis(idx_ref.numpy(), ri, 1))
    np.testing.assert_allclose(np.take_along_axis(w, oi, 1), np.take_along_axis(w_ref.numpy(), ri, 1),
                               rtol=2e-6, atol=1e-7)
    # the bias changes the choice for some tokens: without it the experts differ (the test can fail)
    np.zeros(rc["n_routed_experts"], dtype=np.float32).tofile(tmp_path / "zero.bin")
    r = tool("route", tmp_path / "cfg.json", T, tmp_path / "logits.bin", tmp_path / "zero.bin",
             tmp_path / "idx0.bin", tmp_path / "w0.bin")
    assert r.returncode == 0, r.stderr
    idx0 = np.fromfile(tmp_path / "idx0.bin", dtype=np.int32).reshape(T, K)
    assert (np.sort(idx0, 1) != np.sort(idx, 1)).any()


@pytest.mark.parametrize("given", [
    {},  # every default
    dict(q_lora_rank=None, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=48,
         rope_interleave=False, n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6, n_group=4,
         topk_group=2, norm_topk_prob=False, routed_scaling_factor=1.0, first_k_dense_replace=1,
         moe_intermediate_size=96, num_hidden_layers=4),
])
def test_deepseek_fields_read_as_transformers(given, tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps(given))
    r = tool("dsv3cfg", tmp_path / "cfg.json")
    assert r.returncode == 0, r.stderr
    ours = json.loads(r.stdout)
    ref = transformers.DeepseekV3Config(**given)
    for k, v in ours.items():
        want = getattr(ref, k)
        if k == "q_lora_rank" and want is None:
            want = 0  # qdist: 0 means q_proj
        assert v == pytest.approx(float(want)), (k, v, want)


@pytest.mark.parametrize("bad,field", [
    (dict(n_routed_experts=10, n_group=4), "n_routed_experts"),
    (dict(n_routed_experts=16, n_group=4, topk_group=5), "topk_group"),
    (dict(n_routed_experts=16, n_group=4, topk_group=1, num_experts_per_tok=5), "num_experts_per_tok"),
    (dict(routed_scaling_factor=-1), "routed_scaling_factor"),
    (dict(scoring_func="softmax"), "scoring_func"),
    (dict(kv_lora_rank=0), "kv_lora_rank"),
    (dict(qk_rope_head_dim=63), "qk_rope_head_dim"),
    (dict(q_lora_rank="big"), "q_lora_rank"),
])
def test_bad_deepseek_field_is_named(bad, field, tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps(bad))
    r = tool("route", tmp_path / "cfg.json", 1, tmp_path / "l", tmp_path / "b", tmp_path / "i", tmp_path / "w")
    assert r.returncode == 1 and field in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


MLA = {
    "q-lora-interleaved-yarn": dict(q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=6,
                                    v_head_dim=12, rope_interleave=True, attention_bias=False,
                                    max_position_embeddings=4096,
                                    rope_scaling={"type": "yarn", "factor": 8.0,
                                                  "original_max_position_embeddings": 512, "beta_fast": 32,
                                                  "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}),
    "q-proj-half-split-bias": dict(q_lora_rank=None, kv_lora_rank=20, qk_nope_head_dim=10, qk_rope_head_dim=8,
                                   v_head_dim=6, rope_interleave=False, attention_bias=True,
                                   max_position_embeddings=512, rope_scaling=None),
}


@pytest.mark.parametrize("case", sorted(MLA))
def test_mla_matches_transformers(case, tmp_path):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention, DeepseekV3RotaryEmbedding
    p = dict(MLA[case])
    hidden, heads, nseq, S = 40, 3, 2, 17
    rs = p.pop("rope_scaling")
    cfg = transformers.DeepseekV3Config(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=heads,
                                        rope_theta=10000.0, rope_scaling=rs, **p)
    cfg._attn_implementation = "eager"
    attn = DeepseekV3Attention(cfg, 0).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for prm in attn.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * (0.3 if prm.ndim == 2 else 1.0) + (1.0 if prm.ndim == 1 and
                      prm.shape[0] in (p["kv_lora_rank"], p["q_lora_rank"]) else 0.0))
    x = torch.randn(nseq, S, hidden, generator=g)
    pos = torch.arange(S)[None].expand(nseq, S)
    cos, sin = DeepseekV3RotaryEmbedding(cfg)(x, pos)
    mask = torch.full((S, S), float("-inf")).triu(1)[None, None].expand(nseq, 1, S, S)
    seen = {}  # the input each Linear receives in transformers, for the capture check
    for mod in ("q_b_proj", "kv_b_proj", "o_proj"):
        if getattr(attn, mod, None) is not None:
            getattr(attn, mod).register_forward_pre_hook(
                lambda m, args, mod=mod: seen.__setitem__(mod, args[0].detach().reshape(nseq * S, -1).numpy()))
    with torch.no_grad():
        ref = attn(x, (cos, sin), mask)[0].numpy().reshape(nseq * S, hidden)
    wd = tmp_path / "w"
    wd.mkdir()
    names = {"q_proj": "q_proj", "q_a_proj": "q_a_proj", "q_a_layernorm": "q_a_norm", "q_b_proj": "q_b_proj",
             "kv_a_proj_with_mqa": "kv_a_proj", "kv_a_layernorm": "kv_a_norm", "kv_b_proj": "kv_b_proj",
             "o_proj": "o_proj"}
    for k, v in attn.state_dict().items():
        mod, kind = k.rsplit(".", 1)
        out = names[mod] + ("_bias" if kind == "bias" else "")
        v.numpy().astype(np.float32).tofile(wd / f"{out}.bin")
    # qdist reads the rope from a Llama-form config; the MLA fields beside it
    d = dict(LLAMA, hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=heads,
             head_dim=p["qk_rope_head_dim"], rope_theta=10000.0, rope_scaling=rs, **p)
    (tmp_path / "config.json").write_text(json.dumps(d))
    x.numpy().astype(np.float32).tofile(tmp_path / "x.bin")
    r = tool("mla", tmp_path / "config.json", nseq, S, wd, tmp_path / "x.bin", tmp_path / "out.bin")
    assert r.returncode == 0, r.stderr
    ours = np.fromfile(tmp_path / "out.bin", dtype=np.float32).reshape(nseq * S, hidden)
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    print(f"mla {case}: rel err {rel:.2e}, softmax scale {attn.scaling:.6f}")
    assert rel <= 1e-5
    # the captured Linear inputs (what GPTQ's Hessians would be built from) are transformers' inputs
    lins = {0: ("x", x.numpy().reshape(nseq * S, hidden)), 3: ("kv_b_proj", seen["kv_b_proj"]),
            4: ("o_proj", seen["o_proj"])}
    if p["q_lora_rank"]:
        lins[1] = ("q_b_proj", seen["q_b_proj"])
    else:
        assert not (tmp_path / "out.bin.cap1").exists()
    for k, (what, want) in lins.items():
        got = np.fromfile(tmp_path / f"out.bin.cap{k}", dtype=np.float32).reshape(want.shape)
        err = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert err <= 1e-5, (what, err)
