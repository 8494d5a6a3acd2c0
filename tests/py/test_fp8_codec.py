# SPDX-License-Identifier: MIT
"""qdist's E4M3 encoder (src/core/qd-fp8.c, driven through tests/core/test-fp8.c) against torch's
float8_e4m3fn cast, which compressed-tensors uses after clamping to [-448, 448]: every code, every
half-way point between neighbouring codes (ties to even), subnormals, the saturation boundary and
random values over the whole range."""
import subprocess

import numpy as np
import torch

import qdtest as qt


def torch_codes(x):
    t = torch.from_numpy(x).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return t.view(torch.uint8).numpy()


def qdist_codes(x, tmp_path):
    src, dst = tmp_path / "in.f32", tmp_path / "out.u8"
    x.astype("<f4").tofile(src)
    r = subprocess.run([qt.tool("tests", "core-test-fp8"), str(src), str(dst)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return np.fromfile(dst, np.uint8)


def test_encoder_equals_torch(tmp_path):
    codes = np.arange(256, dtype=np.uint8)
    vals = torch.from_numpy(codes).view(torch.float8_e4m3fn).float().numpy()
    finite = np.sort(vals[np.isfinite(vals)])
    finite = np.unique(finite)
    mids = (finite[:-1].astype(np.float64) + finite[1:]) / 2  # exact in fp32: 4 significant bits + 1
    rng = np.random.default_rng(0)
    rand = np.concatenate([rng.uniform(-500, 500, 20000), rng.standard_normal(20000) * 10 ** rng.uniform(-4, 2, 20000),
                           np.exp2(rng.uniform(-12, 9, 20000)) * rng.choice([-1, 1], 20000)])
    x = np.concatenate([finite, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf), rand,
                        [447.9, 448.0, 448.1, 463.9, 464.0, 479.0, 1e6, np.inf, -np.inf, 2.0 ** -10, 2.0 ** -11,
                         -(2.0 ** -10), 1e-30, -0.0, 0.0]]).astype(np.float32)
    got, want = qdist_codes(x, tmp_path), torch_codes(x)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, [(float(x[i]), int(got[i]), int(want[i])) for i in bad[:10]]
    assert x.size > 60000
