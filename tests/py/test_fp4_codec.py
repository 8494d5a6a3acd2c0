# SPDX-License-Identifier: MIT
"""qdist's E2M1 encoder and E8M0 MX scale (src/core/qd-fp4.c, driven through tests/core/test-fp4.c)
against compressed-tensors' own functions: cast_to_fp4 + pack_fp4_to_uint8 (the code the CPU export
path packs) and generate_mx_scales (the MXFP4 group scale), on every code, the ties between
neighbours and random values over many magnitudes."""
import subprocess

import numpy as np
import torch
from compressed_tensors.compressors.nvfp4.helpers import pack_fp4_to_uint8
from compressed_tensors.quantization.utils.fp4_utils import cast_to_fp4
from compressed_tensors.quantization.utils.mxfp_utils import generate_mx_scales

import qdtest as qt


def qdist_codes(kind, x, tmp_path):
    src, dst = tmp_path / "in.f32", tmp_path / "out.u8"
    x.astype("<f4").tofile(src)
    r = subprocess.run([qt.tool("tests", "core-test-fp4"), kind, str(src), str(dst)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return np.fromfile(dst, np.uint8)


def test_e2m1_equals_compressed_tensors(tmp_path):
    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])
    mids = (grid[:-1] + grid[1:]) / 2
    rng = np.random.default_rng(0)
    rand = np.concatenate([rng.uniform(-8, 8, 30000), rng.standard_normal(30000) * 10 ** rng.uniform(-3, 1, 30000)])
    x = np.concatenate([grid, -grid, mids, -mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
                        rand, [7.0, 1e30, -1e30]]).astype(np.float32)
    x = x[: x.size // 2 * 2]
    want = pack_fp4_to_uint8(cast_to_fp4(torch.from_numpy(x.copy()).reshape(1, -1))).reshape(-1).numpy()
    want = np.stack([want & 15, want >> 4], axis=1).reshape(-1)
    got = qdist_codes("e2m1", x, tmp_path)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, [(float(x[i]), int(got[i]), int(want[i])) for i in bad[:10]]
    assert x.size > 60000


def test_mx_scale_equals_compressed_tensors(tmp_path):
    rng = np.random.default_rng(1)
    x = np.concatenate([np.exp2(rng.uniform(-60, 60, 40000)), np.exp2(np.arange(-100, 100, dtype=np.float64)),
                        np.exp2(np.arange(-100, 100, dtype=np.float64)) * 1.75,
                        np.nextafter(np.exp2(np.arange(-100, 100, dtype=np.float64)) * 1.75, 0)]).astype(np.float32)
    for dt in (torch.float32, torch.bfloat16):
        xs = torch.from_numpy(x).to(dt)
        want = generate_mx_scales(xs, num_bits=4).float().numpy()
        assert want.min() >= 0 and want.max() <= 254
        got = qdist_codes("mx", xs.float().numpy(), tmp_path)
        bad = np.nonzero(got != want.astype(np.uint8))[0]
        assert bad.size == 0, [(float(xs[i]), int(got[i]), float(want[i])) for i in bad[:10]]
