# SPDX-License-Identifier: MIT
"""qdist inspect --vllm-tp N on a GPTQ export: the layers it flags are exactly those that break
vLLM's Marlin rules (formats.md B: per tensor-parallel shard N % 64, K % 128, K % group), computed
here independently from the checkpoint's own tensors with the safetensors package. Column-parallel
layers (q, k, v, gate, up) split N across ranks; row-parallel ones (o, down) split K."""
import pytest
from safetensors import safe_open

import qdtest as qt
from qdtest import C4_TRAIN as CALIB
from qdtest import STORIES as MODEL
from qdtest import qdist

qt.need(MODEL, CALIB)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm") / "gptq"
    qdist("quantize", "--model", MODEL, "--output", out, "--calib", CALIB, "--nsamples", "8", "--seqlen", "64",
          "--group-size", "-1", "--method", "gptq", "--format", "gptq", "--quiet", "--progress", "none")
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
    r = qdist("inspect", export, "--vllm-tp", tp)
    flagged = {line.split(":")[0] for line in r.stdout.splitlines() if line.startswith("model.layers.")}
    want = expected_failures(export, tp)
    assert want, "the fixture should break Marlin somewhere"
    assert flagged == want


def test_bad_tp_is_a_usage_error(export):
    r = qdist("inspect", export, "--vllm-tp", "0", ok=False)
    assert r.returncode == 2 and "vllm-tp" in r.stderr
