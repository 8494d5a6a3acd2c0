# SPDX-License-Identifier: MIT
"""GPTQ with fp8-block and fp8-static targets (issue 20 item 1): the scales are the ones round-to-nearest
uses (amax / 448 per 128 x 128 block, or per tensor), fixed from the weight before the sweep, and the
sweep rounds each column to E4M3 with its block's scale. Checked here:
- one Linear (`qdist quant-layer --scheme`), random weights and correlated inputs: the scales equal
  this test's own amax / 448 of each block, every value is e4m3(code) * its block's scale, GPTQ's
  layer error tr((W - Q) H (W - Q)^T) is below RTN's, and a small numpy GPTQ written here from the
  algorithm (column by column, the same scales) gives the same error and codes up to fp noise;
- a model (a tiny Llama built here): the compressed-tensors export decompresses through the
  compressed-tensors library to the fake directory's weights bit for bit, its weight_scale is this
  test's amax / 448 of the source weight's blocks, its E4M3 bytes are the fake run's codes, GPTQ moved
  codes against round-to-nearest with the same scales, and `qdist eval` of the export equals that of the fake run;
- three data-parallel ranks (rows split on 128-row blocks; fp8-static's one scale from the whole
  weight) give one rank's bytes.
"""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import export_fakegen as fg  # noqa: E402
import qforward as qf  # noqa: E402

import qdtest as qt  # noqa: E402
import torch  # noqa: E402
from compressed_tensors.compressors.naive_quantized.base import FloatQuantizationCompressor  # noqa: E402
from compressed_tensors.quantization import QuantizationScheme  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

REPO = os.environ.get("QD_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
FIX = os.path.join(REPO, "fixtures")  # in the repository: a missing file is a failure
STORIES = os.path.join(FIX, "stories260K-hf")
CALIB = os.path.join(FIX, "wikitext-2-raw", "wiki.test.raw")

SCHEMES = ["fp8-block", "fp8-static"]
qdist = qt.qdist


def tensors(d):
    t = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            t.update(load_file(os.path.join(d, f)))
    return t


def files_bytes(d):
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d)) if f != "qdist_report.json"}


# ---- E4M3 and the scales, written here (torch's float8_e4m3fn cast rounds to nearest even) ----

def e4m3_value(codes):
    return torch.from_numpy(np.asarray(codes).astype(np.uint8)).view(torch.float8_e4m3fn).float().numpy()


def e4m3_round(x):
    """nearest E4M3 value, saturating at 448 (compressed-tensors clamps before the cast)"""
    t = torch.from_numpy(np.clip(np.asarray(x, np.float32), -448, 448))
    return t.to(torch.float8_e4m3fn).float().numpy().astype(np.float64)


def block_scales(W, scheme):
    """[ceil(N/128), ceil(K/128)] (fp8-block) or [1, 1] (fp8-static) float32 scales: amax / 448 in fp32"""
    W = np.asarray(W, np.float32)
    b = 128 if scheme == "fp8-block" else max(W.shape)
    N, K = W.shape
    S = np.zeros(((N + b - 1) // b, (K + b - 1) // b), np.float32)
    for i in range(S.shape[0]):
        for j in range(S.shape[1]):
            amax = np.float32(np.abs(W[i * b:(i + 1) * b, j * b:(j + 1) * b]).max())
            S[i, j] = amax / np.float32(448) if amax > 0 else np.float32(1)
    return S, b


def expand(S, b, N, K):
    """the scale of every weight [N, K]"""
    return np.repeat(np.repeat(S, b, 0), b, 1)[:N, :K].astype(np.float64)


def ref_gptq(W, H, scale, damp=0.01):
    """GPTQ from the algorithm (Frantar et al., OBS column by column): Hinv = chol(inv(H + damp mean diag H))
    upper U; for each column c: q = round_e4m3(w / s) * s, e = (w - q) / U[c, c], W[:, c+1:] -= e U[c, c+1:]"""
    W = np.array(W, np.float64)
    K = W.shape[1]
    Hd = H + damp * np.mean(np.diag(H)) * np.eye(K)
    U = np.linalg.cholesky(np.linalg.inv(Hd)).T
    Q = np.zeros_like(W)
    for c in range(K):
        q = e4m3_round(W[:, c] / scale[:, c]) * scale[:, c]
        e = (W[:, c] - q) / U[c, c]
        Q[:, c] = q
        W[:, c + 1:] -= np.outer(e, U[c, c + 1:])
    return Q


def layer_error(W, Q, H):
    E = np.asarray(W, np.float64) - Q
    return float(np.einsum("nk,kl,nl->", E, H, E)) / 2


def quant_layer(tmp, W, X, scheme, method):
    inp, out = os.path.join(tmp, "L.safetensors"), os.path.join(tmp, f"R-{scheme}-{method}.safetensors")
    qf.write_safetensors(inp, {"weight": W, "inputs": X})
    qdist("quant-layer", "--input", inp, "--output", out, "--scheme", scheme, "--method", method)
    return qf.read_safetensors(out)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_layer_gptq_beats_rtn_and_matches_reference(scheme, tmp_path):
    rng = np.random.default_rng(7)
    N, K, T = 200, 384, 1024  # two row blocks (the second partial), three column blocks
    W = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    W[rng.integers(0, N, 6), rng.integers(0, K, 6)] *= 10  # outliers: blocks with different scales
    A = rng.standard_normal((K, K)) / np.sqrt(K)
    X = (rng.standard_normal((T, K)) @ A + 0.1 * rng.standard_normal((T, K))) * np.exp(rng.standard_normal(K) * 0.7)
    X = X.astype(np.float32)
    H = (2.0 / T) * (X.astype(np.float64).T @ X.astype(np.float64))
    S, b = block_scales(W, scheme)
    scale = expand(S, b, N, K)
    r = {m: quant_layer(str(tmp_path), W, X, scheme, m) for m in ("rtn", "gptq")}
    for m, res in r.items():
        G = (K + 127) // 128 if scheme == "fp8-block" else 1
        assert res["scales"].shape == (G, N) and not res["zeros"].any(), m
        # the scales: amax / 448 of each block, the same for RTN and GPTQ
        assert np.array_equal(res["scales"].T.astype(np.float64), scale[:, ::128 if G > 1 else K][:, :G]), m
        # every value is its E4M3 code times its block's scale, exactly
        assert res["codes"].min() >= 0 and res["codes"].max() <= 255 and not ((res["codes"] & 0x7f) == 0x7f).any()
        assert np.array_equal(res["dequant"].astype(np.float64),
                              (e4m3_value(res["codes"]) * scale.astype(np.float32)).astype(np.float64)), m
    s32 = scale.astype(np.float32)  # round to nearest as qdist does it: x / s and e4m3(code) * s in fp32
    assert np.array_equal(r["rtn"]["dequant"], e4m3_round(W / s32).astype(np.float32) * s32)
    e_rtn, e_gptq = layer_error(W, r["rtn"]["dequant"], H), layer_error(W, r["gptq"]["dequant"], H)
    ref_q = ref_gptq(W, H, scale)
    e_ref = layer_error(W, ref_q, H)
    print(f"{scheme}: layer error rtn {e_rtn:.6g} gptq {e_gptq:.6g} reference gptq {e_ref:.6g}")
    assert e_gptq < 0.8 * e_rtn
    assert abs(e_gptq - e_ref) / e_ref < 2e-3
    same = float(np.mean(r["gptq"]["dequant"].astype(np.float64) == ref_q.astype(np.float32).astype(np.float64)))
    assert same > 0.97, same


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return fg.make_tiny128(STORIES, str(tmp_path_factory.mktemp("models") / "t128"))


def run_args(scheme, method):
    return ["--backend", "cpu", "--quiet", "--progress", "none", "--scheme", scheme, "--method", method,
            "--calib", CALIB, "--nsamples", "8", "--seqlen", "128", "--scale-dtype", "f32"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_model_export_decompresses_to_gptq_weights(scheme, model, tmp_path):
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    qdist("quantize", "--model", model, "--output", fake, "--format", "fake", *run_args(scheme, "gptq"))
    qdist("quantize", "--model", model, "--output", out, "--format", "compressed-tensors", *run_args(scheme, "gptq"))
    rep = json.load(open(os.path.join(out, "qdist_report.json")))
    assert rep["settings"]["method"] == "gptq"
    assert all(m["method"] == "gptq" and m["scheme"] == scheme for m in rep["modules"].values())
    q = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    (group,) = q["config_groups"].values()
    assert group["weights"]["strategy"] == ("block" if scheme == "fp8-block" else "tensor")
    sch = QuantizationScheme.model_validate({k: v for k, v in group.items() if k != "format"})
    src, t, f = tensors(model), tensors(out), tensors(fake)
    names = [k[:-len(".qd_codes")] for k in f if k.endswith(".qd_codes")]
    assert len(names) == 14
    moved = 0
    for p in names:
        w, s = t[p + ".weight"], t[p + ".weight_scale"]
        assert w.dtype == torch.float8_e4m3fn
        N, K = w.shape
        S, b = block_scales(src[p + ".weight"].numpy(), scheme)
        # weight_scale: amax / 448 of the source weight's blocks (the scales fixed before the sweep)
        assert np.array_equal(s.float().numpy().reshape(-1), S.reshape(-1)), p
        # the export's bytes are the fake run's codes, each dequantized with its block's scale
        codes = f[p + ".qd_codes"].numpy()
        assert np.array_equal(w.view(torch.uint8).numpy(), codes.astype(np.uint8)), p
        want = f[p + ".weight"].float().numpy()
        assert np.array_equal(want, e4m3_value(codes) * expand(S, b, N, K).astype(np.float32)), p
        got = FloatQuantizationCompressor.decompress({"weight": w, "weight_scale": s}, sch)["weight"]
        assert np.array_equal(got.float().numpy(), want), p
        s32 = expand(S, b, N, K).astype(np.float32)  # round to nearest with the same scales: what GPTQ moved
        moved += int((e4m3_round(src[p + ".weight"].numpy() / s32) != e4m3_value(codes)).sum())
    assert moved > 1000, moved
    if scheme == "fp8-static":
        assert all(t[p + ".input_scale"].numel() == 1 for p in names)

    def ppl(d):
        r = qdist("eval", "--model", d, "--data", CALIB, "--seqlen", "128", "--max-windows", "4", "--backend", "cpu",
                  "--json", "--quiet")
        return json.loads(r.stdout.strip().splitlines()[-1])["ppl"]
    assert ppl(out) == ppl(fake)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_three_ranks_equal_one(scheme, model, tmp_path):
    """row split of the sweep: fp8-block's rows go to ranks in whole 128-row blocks (t128's k_proj, 64
    rows, lies on one rank; gate/up's two blocks on two), fp8-static's ranks share the whole weight's scale"""
    args = ["quantize", "--model", model, "--format", "compressed-tensors", "--numerics", "exact",
            "--parallel", "data", *run_args(scheme, "gptq")]
    one, three = str(tmp_path / "one"), str(tmp_path / "three")
    qdist(*args, "--output", one)
    qt.mpirun(3, *args, "--output", three)
    assert files_bytes(one) == files_bytes(three)


def test_mxfp4_w4a4_gptq_weights_are_mxfp4s(model, tmp_path):
    """mxfp4-w4a4 takes GPTQ as mxfp4 does (the same weights; only the declared activations differ):
    the fake runs hold the same codes and scales, and GPTQ moved codes against round-to-nearest"""
    f = {}
    for sc, m in (("mxfp4", "gptq"), ("mxfp4-w4a4", "gptq"), ("mxfp4-w4a4", "rtn")):
        out = str(tmp_path / f"{sc}-{m}")
        qdist("quantize", "--model", model, "--output", out, "--format", "fake", *run_args(sc, m)[:-2])
        f[sc, m] = tensors(out)
        assert all(x["method"] == m for x in json.load(open(os.path.join(out, "qdist_report.json")))["modules"].values())
    keys = [k for k in f["mxfp4", "gptq"] if k.endswith((".qd_codes", ".qd_scales"))]
    assert len(keys) == 28 and all(torch.equal(f["mxfp4", "gptq"][k], f["mxfp4-w4a4", "gptq"][k]) for k in keys)
    moved = sum(int((f["mxfp4-w4a4", "rtn"][k] != f["mxfp4-w4a4", "gptq"][k]).sum()) for k in keys
                if k.endswith(".qd_codes"))
    assert moved > 1000, moved
