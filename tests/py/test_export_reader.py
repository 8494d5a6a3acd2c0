# SPDX-License-Identifier: MIT
"""qdist's dequantise-on-load reader (shard/qd-qformat-read.h, what eval and inspect use) on
compressed-tensors checkpoints written by compressed-tensors itself (PackedQuantizationCompressor:
4-bit asymmetric groups, 8-bit symmetric channels, 3-bit dense streams): the fp32 weights qdist reads
equal the dequantised weights exactly. The reader is driven through the dump mode of the C test
binary tests/shard/test-qformat-read.c.
"""
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
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
        dump = str(tmp_path / "w.bin")
        r = subprocess.run([qt.tool("tests", "shard-test-qformat-read"), ck, p, dump], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        got = np.fromfile(dump, np.float32).reshape(t[p + ".weight"][1].shape)
        assert np.array_equal(got, t[p + ".weight"][1]), p
