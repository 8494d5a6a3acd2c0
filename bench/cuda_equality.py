#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""cuda_equality.py - issue 8's "same results as CPU" check on a real model, for a GPU machine (not CI).

Quantizes the same model twice with the same calibration: once with --backend cpu (the reference),
once with --backend cuda (--math fp32, --math MODE to change it), both with the same --numerics (exact, the default: both
backends compute the same bits, docs/cuda.md; fast: each backend's own BLAS order, informational since
GPTQ's chaotic error feedback amplifies the ~1e-7 differences). Both use --format fake, whose output keeps each
Linear's integer codes as <module>.qd_codes (u8). The script then compares:
  - the codes: >= 99.9% equal over all weights (and per module, printed);
  - the perplexity of the two outputs, both evaluated with --backend cpu: within 0.1% of each other.
Methods: gptq and awq by default. Exits 0 when every check passes, 1 otherwise.

  python3 bench/cuda_equality.py --qdist build-dev/qdist [--model fixtures/pycode-16m]
      [--methods gptq,awq] [--nsamples 64] [--seqlen 512] [--max-windows 40] [--cuda-backend cuda]
      [--numerics exact|fast]

--cuda-backend cpu runs the script's own logic with no GPU: both sides on the CPU, expected identical.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np


def read_codes(d):
    """{tensor name: uint8 array} of every *.qd_codes tensor in the safetensors files of d."""
    out = {}
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".safetensors"):
            continue
        with open(os.path.join(d, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            base = 8 + n
            for name, t in hdr.items():
                if name == "__metadata__" or not name.endswith(".qd_codes"):
                    continue
                a, b = t["data_offsets"]
                f.seek(base + a)
                out[name] = np.frombuffer(f.read(b - a), dtype=np.uint8)
    return out


def run(cmd, env=None):
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit(f"command failed ({r.returncode})")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qdist", required=True)
    ap.add_argument("--model", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "pycode-16m"))
    ap.add_argument("--calib", default=None, help="default: MODEL/calib.jsonl")
    ap.add_argument("--data", default=None, help="perplexity text, default: MODEL/eval.txt")
    ap.add_argument("--methods", default="gptq,awq")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--max-windows", type=int, default=40)
    ap.add_argument("--cuda-backend", default="cuda")
    ap.add_argument("--math", default="fp32", choices=["fp32", "tf32", "bf16", "auto"], help="--math of both runs")
    ap.add_argument("--numerics", default="exact", choices=["exact", "fast"], help="passed to both quantize runs")
    ap.add_argument("--min-equal", type=float, default=0.999)
    ap.add_argument("--max-ppl-rel", type=float, default=0.001)
    a = ap.parse_args()
    calib = a.calib or os.path.join(a.model, "calib.jsonl")
    data = a.data or os.path.join(a.model, "eval.txt")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    ok = True
    tmp = tempfile.mkdtemp(prefix="qd-cuda-eq-")
    print(f"numerics: {a.numerics}")
    rows = [f"| method | backend | numerics | codes equal | modules < {a.min_equal:.3%} | ppl cpu-quantized | ppl cuda-quantized | "
            "rel diff | result |", "|---|---|---|---|---|---|---|---|---|"]
    for method in a.methods.split(","):
        outs, ppl = {}, {}
        for side, be in (("cpu", "cpu"), ("cuda", a.cuda_backend)):
            o = os.path.join(tmp, f"{method}-{side}")
            run([a.qdist, "quantize", "--backend", be, "--model", a.model, "--calib", calib, "--output", o, "--format",
                 "fake", "--method", method, "--bits", "4", "--group-size", "128", "--nsamples", str(a.nsamples),
                 "--seqlen", str(a.seqlen), "--numerics", a.numerics, "--math", a.math, "--overwrite", "--quiet"], env)
            outs[side] = read_codes(o)
            j = json.loads(run([a.qdist, "eval", "--backend", "cpu", "--model", o, "--data", data, "--seqlen",
                                str(a.seqlen), "--max-windows", str(a.max_windows), "--json"], env))
            ppl[side] = float(j.get("ppl", j.get("perplexity", float("nan"))))
        total = same = 0
        bad = []
        for name, c in outs["cpu"].items():
            g = outs["cuda"].get(name)
            if g is None or g.shape != c.shape:
                bad.append(name)
                ok = False
                continue
            eq = int(np.count_nonzero(c == g))
            total += c.size
            same += eq
            if eq < a.min_equal * c.size:
                bad.append(f"{name} {eq / c.size:.4%}")
        frac = same / total if total else 0.0
        rel = abs(ppl["cuda"] - ppl["cpu"]) / ppl["cpu"]
        passed = frac >= a.min_equal and rel <= a.max_ppl_rel and len(outs["cpu"]) == len(outs["cuda"]) > 0
        ok &= passed
        rows.append(f"| {method} | {a.cuda_backend} | {a.numerics} | {frac:.5%} ({total - same} of {total} differ) | {len(bad)} | "
                    f"{ppl['cpu']:.4f} | {ppl['cuda']:.4f} | {rel:.2e} | {'ok' if passed else 'FAIL'} |")
        for b in bad[:10]:
            print("  below threshold or missing: " + b)
    print("\n".join(rows))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
