# SPDX-License-Identifier: MIT
"""qdist inspect --vllm-tp N [--vllm-ep] on tiny Qwen3-MoE GPTQ exports (test_moe.py's builder, hidden 128).

The verdicts expected here are computed from the export's own tensor shapes (safetensors package) with
vLLM's rules, written out in this file:
- routed experts (fused MoE): the intermediate size I of every expert is split, I_part = I / tp (no
  split with expert parallelism); Marlin MoE needs H % 128 == 0 and I_part % max(64, group) == 0
  (vllm/model_executor/layers/quantization/utils/marlin_utils.py check_moe_marlin_supports_layer);
  otherwise moe_wna16, which halves the group until it divides I_part and H and needs it >= 32
  (moe_wna16.py MoeWNA16Method.create_weights), and packed words need I_part % 8 (4-bit);
- dense Linears keep the dense Marlin rules (column-parallel N split, o/down row-parallel K split;
  N % 64, K % 128, K % group per shard);
- routers (mlp.gate) are replicated: never flagged, even when num_experts % tp != 0."""
import re

import pytest
from safetensors import safe_open

import test_moe  # the tiny MoE checkpoint builder (torch, transformers)
from qdtest import qdist


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vllm_moe")
    cal = test_moe.calib(tmp)
    out = {}
    for inter in (96, 256):  # 96: 48 per rank at tp 2, no group >= 32 divides it; 256: Marlin MoE at tp 2 and 4
        src = test_moe.build("qwen3_moe", tmp / f"src{inter}", hidden_size=128, head_dim=32,
                             moe_intermediate_size=inter)
        out[inter] = tmp / f"gptq{inter}"
        test_moe.qdist("quantize", "--model", src, "--output", out[inter], "--calib", cal, "--nsamples", 4,
                       "--seqlen", 32, "--method", "rtn", "--bits", 4, "--group-size", 32, "--format", "gptq",
                       "--quiet", "--progress", "none")
    return out


def linears(d):
    """prefix -> (N, K, group) of every GPTQ Linear"""
    out = {}
    for f in d.glob("*.safetensors"):
        with safe_open(str(f), "np") as h:
            for name in h.keys():
                if name.endswith(".qweight"):
                    p = name[: -len(".qweight")]
                    q, s = h.get_slice(name).get_shape(), h.get_slice(p + ".scales").get_shape()
                    K = q[0] * 8  # 4-bit: 8 codes per int32 row
                    out[p] = (q[1], K, K // s[0])
    return out


def expected(d, tp, ep=False):
    """(flagged names, names that do not load); experts of one block and projection as 'experts.*.proj'"""
    bad, unload = set(), set()
    for p, (N, K, gs) in linears(d).items():
        m = re.match(r"(.*\.experts\.)\d+\.(gate_proj|up_proj|down_proj)$", p)
        if not m:
            row = p.endswith("o_proj") or p.endswith("down_proj")
            n, k = (N, K // tp) if row else (N // tp, K)
            if n % 64 or k % 128 or k % gs:
                bad.add(p)
            continue
        name = m.group(1) + "*." + m.group(2)
        H, inter = (K, N) if m.group(2) != "down_proj" else (N, K)
        et = 1 if ep else tp
        if inter % et:
            bad.add(name)
            unload.add(name)
            continue
        part = inter // et
        if H % 128 == 0 and part % max(64, gs) == 0:
            continue  # Marlin MoE
        bad.add(name)
        g = gs
        while g >= 32 and (part % g or H % g):
            g //= 2
        if part % 8 or g < 32:
            unload.add(name)
    return bad, unload


def inspect(d, *extra):
    r = qdist("inspect", d, *extra)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("model.layers.")]
    flagged = {ln.split(": ")[0] for ln in lines}
    return flagged, {ln.split(": ")[0] for ln in lines if "(does not load)" in ln}, r.stdout


@pytest.mark.parametrize("inter,tp", [(96, 1), (96, 2), (256, 2), (256, 4), (256, 8)])
def test_experts_follow_fused_moe_rules(exports, inter, tp):
    flagged, unload, text = inspect(exports[inter], "--vllm-tp", tp)
    want, want_unload = expected(exports[inter], tp)
    assert flagged == want, text
    assert {n for n in unload if ".experts." in n} == want_unload, text  # dense "does not load": test_cli_vllm_tp
    experts_bad = {n for n in want_unload if ".experts.*." in n}
    if (inter, tp) == (96, 2):  # the badly splitting one: every expert projection fails to load
        assert len(experts_bad) == 6, text  # 2 blocks x gate/up/down
        assert " 0 do not load" not in text, text
    if inter == 256 and tp in (2, 4):  # splits well: the experts run on Marlin MoE
        assert not any(".experts." in n for n in want), text
    # the dense Linears (attention) are still checked: at tp 2 k/v shards are narrower than 64
    if tp >= 2:
        assert any(".self_attn." in n for n in want), text


def test_expert_parallel_keeps_experts_whole(exports):
    flagged, unload, text = inspect(exports[96], "--vllm-tp", 2, "--vllm-ep")
    want, want_unload = expected(exports[96], 2, ep=True)
    assert flagged == want and {n for n in unload if ".experts." in n} == want_unload, text
    assert not any(".experts." in n for n in unload), text  # 96 unsplit: moe_wna16 loads it
    assert any(".experts." in n for n in flagged), text  # but 96 % 64 != 0: not Marlin MoE
    assert "expert parallel" in text


def test_router_is_replicated(exports):
    # 4 experts at tp 8: a column-parallel split of the router would not divide; vLLM replicates it
    flagged, _, text = inspect(exports[256], "--vllm-tp", 8)
    assert not any(n.endswith(".mlp.gate") for n in flagged), text


def test_ep_needs_tp(exports):
    r = qdist("inspect", exports[256], "--vllm-ep", ok=False)
    assert r.returncode == 2 and "--vllm-ep" in r.stderr
