# SPDX-License-Identifier: MIT
"""qdist inspect --vllm-tp N on a GPTQ export: the layers it flags are exactly those that break
vLLM's Marlin rules (formats.md B: per tensor-parallel shard N % 64, K % 128, K % group), computed
here independently from the checkpoint's own tensors with the safetensors package. Column-parallel
layers (q, k, v, gate, up) split N across ranks; row-parallel ones (o, down) split K."""
import os
import subprocess
from pathlib import Path

import pytest
from safetensors import safe_open

QDIST = os.environ.get("QDIST_BIN", "qdist")
FIX = Path(os.environ.get("QD_REPO", Path(__file__).resolve().parents[2])) / "fixtures"
MODEL = FIX / "stories260K-hf"
CALIB = FIX / "c4" / "c4_train_sample.jsonl"
assert MODEL.exists() and CALIB.exists(), f"fixtures {MODEL} / {CALIB} missing from the repository"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm") / "gptq"
    r = subprocess.run([QDIST, "quantize", "--model", str(MODEL), "--output", str(out), "--calib", str(CALIB),
                        "--nsamples", "8", "--seqlen", "64", "--group-size", "-1", "--method", "gptq",
                        "--format", "gptq", "--quiet", "--progress", "none"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def expected_failures(d, tp):
    bad = set()
    with safe_open(str(d / "model.safetensors"), "np") as f:
        for name in f.keys():
            if not name.endswith(".qweight"):
                continue
            prefix = name[: -len(".qweight")]
            qweight = f.get_slice(name).get_shape()  # [K*b/32, N]
            scales = f.get_slice(prefix + ".scales").get_shape()  # [G, N]
            N, K = qweight[1], qweight[0] * 32 // 4
            gs = K // scales[0]
            row_parallel = prefix.endswith("o_proj") or prefix.endswith("down_proj")
            n_part, k_part = (N, K // tp) if row_parallel else (N // tp, K)
            if n_part % 64 or k_part % 128 or k_part % gs:
                bad.add(prefix)
    return bad


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_flags_exactly_the_marlin_breakers(export, tp):
    r = subprocess.run([QDIST, "inspect", str(export), "--vllm-tp", str(tp)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    flagged = {line.split(":")[0] for line in r.stdout.splitlines() if line.startswith("model.layers.")}
    want = expected_failures(export, tp)
    assert want, "the fixture should break Marlin somewhere"
    assert flagged == want


def test_bad_tp_is_a_usage_error(export):
    r = subprocess.run([QDIST, "inspect", str(export), "--vllm-tp", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "vllm-tp" in r.stderr
