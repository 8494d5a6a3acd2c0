"""Helpers to run the qdist binary from the reference tests (skip cleanly when a command is missing)."""
from __future__ import annotations

import os
import subprocess
import tempfile

import numpy as np

import qforward as qf


def qdist_bin():
    return os.environ.get("QDIST_BIN") or os.path.join(
        os.environ.get("QD_REPO", os.path.join(os.path.dirname(__file__), "..", "..")), "build", "qdist")


def command_available(cmd):
    """(ok, why): ok when `qdist <cmd> --help` exits 0."""
    b = qdist_bin()
    if not os.path.exists(b):
        return False, f"qdist binary not found at {b} (set QDIST_BIN)"
    p = subprocess.run([b] + cmd.split() + ["--help"], capture_output=True, text=True)
    if p.returncode != 0:
        return False, (f"`qdist {cmd} --help` exits {p.returncode}: "
                       f"{(p.stderr or p.stdout).strip()[:200]}")
    return True, ""


def quant_layer(W, X, method="gptq", bits=4, gs=128, sym=True, act_order=False, static_groups=False,
                damp=0.01, mse=False, workdir=None):
    """Run `qdist quant-layer` on W [N,K] and inputs X [T,K] (float32); returns its output tensors."""
    own = workdir is None
    d = tempfile.mkdtemp(prefix="qd-ql-") if own else workdir
    inp, out = os.path.join(d, "L.safetensors"), os.path.join(d, "R.safetensors")
    t = {"weight": np.asarray(W, dtype=np.float32)}
    if X is not None:
        t["inputs"] = np.asarray(X, dtype=np.float32).reshape(-1, W.shape[1])
    qf.write_safetensors(inp, t)
    cmd = [qdist_bin(), "quant-layer", "--input", inp, "--output", out, "--method", method,
           "--bits", str(bits), "--group-size", str(gs), "--sym" if sym else "--asym",
           "--damp", repr(float(damp))]
    if act_order:
        cmd.append("--act-order")
    if static_groups:
        cmd.append("--static-groups")
    if mse:
        cmd.append("--mse")
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    r = qf.read_safetensors(out)
    if own:
        for f in (inp, out):
            os.remove(f)
        os.rmdir(d)
    return r
