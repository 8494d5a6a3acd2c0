# SPDX-License-Identifier: MIT
"""qdist's dequantise-on-load reader (shard/qd-qformat-read.h, what eval and inspect use) on
compressed-tensors checkpoints written by compressed-tensors itself (PackedQuantizationCompressor:
4-bit asymmetric groups, 8-bit symmetric channels, 3-bit dense streams): the fp32 weights qdist reads
equal the dequantised weights exactly. Likewise float-quantized FP8 checkpoints (FloatQuantizationCompressor:
per-channel, 128 x 128 block and per-tensor scales): qdist's weights equal the library's decompression. The
reader is driven through the dump mode of the C test binary tests/shard/test-qformat-read.c.
"""
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from compressed_tensors.compressors.naive_quantized.base import FloatQuantizationCompressor
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme, preset_name_to_scheme
from safetensors.torch import save_file

import export_fakegen as fg
import qdtest as qt
from qdtest import STORIES

SCHEMES = [
    ("w4-asym-g32", dict(bits=4, group_size=32, sym=False)),
    ("w8-sym-channel", dict(bits=8, group_size=-1, sym=True)),
    ("w3-asym-g32", dict(bits=3, group_size=32, sym=False)),
]


@pytest.mark.parametrize("case", SCHEMES, ids=[c[0] for c in SCHEMES])
def test_reader_on_compressed_tensors_checkpoint(case, tmp_path):
    name, sc = case
    model = fg.make_tiny128(STORIES, str(tmp_path / "src"))
    fake = str(tmp_path / "fake")
    fg.make_fake(model, fake, **sc)
    t = fg.read_st(os.path.join(fake, "model.safetensors"))
    b, gs, sym = sc["bits"], sc["group_size"], sc["sym"]
    args = QuantizationArgs(num_bits=b, symmetric=sym, strategy="channel" if gs == -1 else "group",
                            group_size=None if gs == -1 else gs)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    out = {}
    prefixes = sorted(k[:-len(".qd_codes")] for k in t if k.endswith(".qd_codes"))
    for p in prefixes:
        w = torch.from_numpy(t[p + ".weight"][1])
        s = torch.from_numpy(np.ascontiguousarray(t[p + ".qd_scales"][1].T))  # [N, G]
        sd = {"weight": w, "weight_scale": s}
        if not sym:
            sd["weight_zero_point"] = torch.from_numpy(
                np.ascontiguousarray(t[p + ".qd_zeros"][1].T - 2 ** (b - 1))).to(torch.int8)
        comp = PackedQuantizationCompressor.compress(sd, scheme)
        for k, v in comp.items():
            out[p + "." + k] = v
    for k, (dt, a) in t.items():
        if not any(k.startswith(p + ".") for p in prefixes):
            out[k] = torch.from_numpy(a)
    ck = str(tmp_path / "ct")
    os.makedirs(ck)
    save_file(out, os.path.join(ck, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(model, "config.json")))
    cfg["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
        "ignore": ["lm_head"], "config_groups": {"group_0": {"targets": ["Linear"], "format": "pack-quantized",
                                                             "weights": args.model_dump(mode="json")}}}
    json.dump(cfg, open(os.path.join(ck, "config.json"), "w"))
    for p in prefixes:
        want = t[p + ".weight"][1]
        assert np.array_equal(qdist_weight(ck, p, tmp_path).reshape(want.shape), want), p


def qdist_weight(ck, prefix, tmp_path):
    """the fp32 weight of Linear prefix of checkpoint ck as qdist's dequantise-on-load reader returns it"""
    dump = str(tmp_path / "w.bin")
    r = subprocess.run([qt.tool("tests", "shard-test-qformat-read"), ck, prefix, dump], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return np.fromfile(dump, np.float32)


@pytest.mark.parametrize("preset", ["FP8_DYNAMIC", "FP8_BLOCK", "FP8"])
def test_reader_on_float_quantized_checkpoint(preset, tmp_path):
    """e4m3 weights with per-channel, 128 x 128 block or per-tensor scales (amax / 448), compressed and
    decompressed by compressed-tensors; qdist reads the same fp32 weights bit for bit"""
    model = fg.make_tiny128(STORIES, str(tmp_path / "src"))
    t = fg.read_st(os.path.join(model, "model.safetensors"))
    scheme = preset_name_to_scheme(preset, ["Linear"])
    prefixes = sorted(k[:-len(".weight")] for k, (_, a) in t.items()
                      if k.endswith("_proj.weight") and a.ndim == 2)
    out, want = {}, {}
    for k, (dt, a) in t.items():
        out[k] = torch.from_numpy(a)
    for p in prefixes:
        w = torch.from_numpy(t[p + ".weight"][1]).float()
        N, K = w.shape
        if scheme.weights.strategy == "block":
            s = torch.tensor([[float(w[r:r + 128, c:c + 128].abs().max()) / 448 for c in range(0, K, 128)]
                              for r in range(0, N, 128)])  # a last partial block (k/v_proj: N 64) too
        elif scheme.weights.strategy == "channel":
            s = w.abs().amax(1, keepdim=True) / 448
        else:
            s = (w.abs().max() / 448).reshape(1)
        comp = FloatQuantizationCompressor.compress({"weight": w, "weight_scale": s}, scheme)
        want[p] = FloatQuantizationCompressor.decompress(comp, scheme)["weight"].float().numpy()
        out[p + ".weight"], out[p + ".weight_scale"] = comp["weight"], comp["weight_scale"]
    ck = str(tmp_path / "ct")
    os.makedirs(ck)
    save_file(out, os.path.join(ck, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(model, "config.json")))
    group = {k: v for k, v in scheme.model_dump(mode="json").items() if v is not None}
    cfg["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
        "ignore": ["lm_head"], "config_groups": {"group_0": dict(group, format="float-quantized")}}
    json.dump(cfg, open(os.path.join(ck, "config.json"), "w"))
    assert len(prefixes) == 14
    for p in prefixes:
        assert out[p + ".weight"].dtype == torch.float8_e4m3fn
        got = qdist_weight(ck, p, tmp_path).reshape(want[p].shape)
        assert np.array_equal(got, want[p]), (p, float(np.abs(got - want[p]).max()))
