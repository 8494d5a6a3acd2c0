#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""dp_1gpu.py - the data-parallel checks (issue 18 item 6b) that ONE GPU allows: P MPI ranks sharing
one GPU, each with its own CUDA context, the reductions going through the host-staged MPI
collectives (mpi/collective.c; NCCL refuses two ranks on one device).

  python3 bench/dp_1gpu.py --qdist build-dev/qdist [--model fixtures/pycode-16m] [--ranks 1,2] [--out DIR]

Checks, on the CUDA backend:
  1. --numerics exact: GPTQ and AWQ checkpoints of every P byte-identical to P = 1's (the report
     aside, which holds timings);
  2. default numerics: GPTQ ppl of every P against P = 1 (`qdist eval`, the same backend), the share of
     GPTQ code words equal to P = 1's, and the per-phase seconds of each rank (the `reduce` phase is the
     collectives);
  3. the NCCL table with one rank (--collectives nccl; one GPU allows no more): the run says it reduces
     over NCCL and its checkpoint equals --collectives mpi's; --collectives nccl with P ranks sharing
     the GPU is refused in one line (exit 2); --collective-test runs tests/mpi/test-collective-nccl.
Prints markdown tables; exit 1 when a check fails.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")


def tree_hashes(d):
    out = {}
    for p in sorted(Path(d).rglob("*")):
        if p.is_file() and p.name != "qdist_report.json":
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def quantize(a, P, method, numerics, out, extra=(), want_rc=0):
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["mpirun", "-n", str(P), a.qdist, "quantize", "--model", a.model, "--calib", f"{a.model}/calib.jsonl",
           "--nsamples", str(a.nsamples), "--seqlen", str(a.seqlen), "--method", method, "--backend", a.backend,
           "--numerics", numerics, "--format", "gptq" if method == "gptq" else "awq", "--output", out,
           "--progress", "none", "--overwrite"] + list(extra)
    t0 = time.time()
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != want_rc:
        print(f"FAILED (rc {r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}", file=sys.stderr)
    quantize.stderr = r.stderr
    return r.returncode, wall


def code_words(d):
    """GPTQ qweight tensors of a checkpoint, by name (int32 words of packed codes)."""
    from safetensors.numpy import load_file
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        out.update({k: v for k, v in load_file(str(f)).items() if k.endswith(".qweight")})
    return out


def equal_words(a, b):
    tot = sum(v.size for v in a.values())
    return sum(int((v == b[k]).sum()) for k, v in a.items()) / tot if tot else float("nan")


def ppl(a, d):
    r = subprocess.run([a.qdist, "eval", "--model", d, "--data", f"{a.model}/eval.txt", "--seqlen", "512",
                        "--max-windows", "32", "--backend", a.backend], env=ENV, capture_output=True, text=True)
    m = re.search(r"ppl[^0-9]*([0-9.]+)", r.stdout + r.stderr)
    return float(m.group(1)) if m else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qdist", required=True)
    ap.add_argument("--model", default="fixtures/pycode-16m")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--out", default="/tmp/dp1gpu")
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--collective-test", default="", help="tests/mpi/test-collective-nccl binary to run (1 rank)")
    a = ap.parse_args()
    ranks = [int(x) for x in a.ranks.split(",")]
    ok = True
    print(f"\ndata-parallel ranks on one GPU: {a.model}, {a.nsamples} x {a.seqlen}, W4 g128, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| method | numerics | P | rc | wall s | files equal to P = 1 |")
    print("|---|---|---|---|---|---|")
    for method in ("gptq", "awq"):
        ref = None
        for P in ranks:
            out = f"{a.out}/{method}-exact-{P}"
            rc, wall = quantize(a, P, method, "exact", out, ["--quiet"])
            h = tree_hashes(out) if rc == 0 else {}
            same = "-" if P == ranks[0] else ("yes" if h and h == ref else "NO")
            ok &= rc == 0 and same != "NO"
            ref = h if P == ranks[0] else ref
            print(f"| {method} | exact | {P} | {rc} | {wall:.1f} | {same} |")
    print("\n| method | numerics | P | wall s | ppl (qdist eval, 32 x 512) | vs P = 1 | code words equal to P = 1 | files equal | phases of the slowest rank (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    p1 = w1 = h1 = None
    for P in ranks:
        out = f"{a.out}/gptq-fast-{P}"
        rc, wall = quantize(a, P, "gptq", "fast", out, ["--quiet"])
        ok &= rc == 0
        v = ppl(a, out) if rc == 0 else float("nan")
        w = code_words(out) if rc == 0 else {}
        h = tree_hashes(out) if rc == 0 else {}
        p1 = v if P == ranks[0] else p1
        w1 = w if P == ranks[0] else w1
        h1 = h if P == ranks[0] else h1
        eq = "-" if P == ranks[0] else f"{equal_words(w1, w) * 100:.3f}%"
        same = "-" if P == ranks[0] else ("yes" if h and h == h1 else "no")
        ph = ""
        try:
            rep = json.load(open(f"{out}/qdist_report.json"))
            slow = max(rep["ranks"], key=lambda r: r.get("total_s", 0))
            ph = ", ".join(f"{k} {x:.2f}" for k, x in slow["phases_s"].items() if x >= 0.01)
        except (OSError, ValueError, KeyError):
            pass
        rel = "-" if P == ranks[0] else f"{(v / p1 - 1) * 100:+.3f}%"
        ok &= P == ranks[0] or abs(v / p1 - 1) < 5e-4
        print(f"| gptq | fast | {P} | {wall:.1f} | {v:.4f} | {rel} | {eq} | {same} | {ph} |")

    print("\n| NCCL check | result |")
    print("|---|---|")
    if a.collective_test:
        r = subprocess.run([a.collective_test], env=ENV, capture_output=True, text=True)
        ok &= r.returncode == 0
        print(f"| tests/mpi/test-collective-nccl, 1 rank | rc {r.returncode}: {(r.stdout + r.stderr).strip().splitlines()[-1:]} |")
    hashes = {}
    for coll in ("nccl", "mpi"):
        out = f"{a.out}/gptq-{coll}-1"
        rc, wall = quantize(a, 1, "gptq", "fast", out, ["--collectives", coll])
        said = "NCCL reductions" in quantize.stderr
        ok &= rc == 0 and said == (coll == "nccl")
        hashes[coll] = tree_hashes(out) if rc == 0 else {}
        print(f"| --collectives {coll}, 1 rank | rc {rc}, {wall:.1f} s, log says NCCL reductions: {said} |")
    same = hashes["nccl"] and hashes["nccl"] == hashes["mpi"]
    ok &= bool(same)
    print(f"| nccl checkpoint equals mpi's | {'yes' if same else 'NO'} |")
    P = max(ranks)
    if P > 1:
        rc, _ = quantize(a, P, "gptq", "fast", f"{a.out}/gptq-nccl-shared", ["--collectives", "nccl"], want_rc=2)
        line = [l for l in quantize.stderr.splitlines() if "error:" in l][:1]
        ok &= rc == 2 and len(line) == 1
        print(f"| --collectives nccl, {P} ranks on one GPU | rc {rc}: {line} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
