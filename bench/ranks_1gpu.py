#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ranks_1gpu.py - the distributed checks of issues 9 and 10 that ONE GPU allows: P MPI ranks sharing
one GPU (each rank its own CUDA context), activations crossing ranks through the host-staged MPI
transport (NCCL refuses two ranks on one device, so the NCCL transport is not exercised here).

  python3 bench/ranks_1gpu.py --qdist build-dev/qdist [--synthetic DIR] [--ranks 1,2,4] [--out DIR]

Checks (issue 9, items 1-3, on one GPU instead of two):
  1. --schedule exact with P = 2 gives a checkpoint byte-identical to P = 1 (trained fixture, and the
     synthetic 8B-shaped model when --synthetic is given);
  2. --schedule overlap: wall time and (fixture) perplexity against exact;
  3. rank 1 SIGKILLed in the middle (QD_INJECT_KILL), then --resume: byte-identical to P = 1.
Scaling table (issue 10's measurements, on one GPU): for each P and schedule, wall time and per-rank
busy / waiting time from qdist_report.json. On one shared GPU the ranks compete for the same SMs,
so efficiency T1 / (P * TP) says how much the pipeline costs, not what P GPUs would give.
Prints markdown tables; exit 1 when a byte-identity check fails.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")


def digest(d):
    """sha256 over every checkpoint file but the run report (which holds timings)."""
    h = hashlib.sha256()
    for p in sorted(Path(d).iterdir()):
        if p.name == "qdist_report.json" or p.is_dir():
            continue
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qdist", required=True)
    ap.add_argument("--fixture", default="fixtures/pycode-16m")
    ap.add_argument("--synthetic", default="", help="a bench/gen_synthetic.py model directory (optional)")
    ap.add_argument("--ranks", default="1,2,4")
    ap.add_argument("--backend", default="cuda", help="cpu: a smoke run of this script without a GPU")
    ap.add_argument("--fixture-nsamples", type=int, default=64)
    ap.add_argument("--out", default="/tmp/qd-ranks1gpu")
    ap.add_argument("--gpu-mem-total", type=float, default=70.0, help="GiB shared by the ranks (if --gpu-mem exists)")
    a = ap.parse_args()
    qd = os.path.abspath(a.qdist)
    has_gpu_mem = "--gpu-mem" in subprocess.run([qd, "quantize", "--help"], capture_output=True, text=True).stdout
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    failed = []

    def quantize(model, calib, ns, sl, out, P, sched="exact", extra=(), env=None):
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-n", str(P)] if P > 1 else []
        for k in (env or {}):
            if P > 1:
                cmd += ["-x", k]
        cmd += [qd, "quantize", "--backend", a.backend, "--model", model, "--calib", calib, "--nsamples", str(ns),
                "--seqlen", str(sl), "--method", "gptq", "--bits", "4", "--group-size", "128", "--format", "gptq",
                "--schedule", sched, "--output", out, "--progress", "none", "--quiet"] + list(extra)
        if has_gpu_mem:
            cmd += ["--gpu-mem", f"{a.gpu_mem_total / P:.1f}"]
        t = time.time()
        r = subprocess.run(cmd, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=900)
        return r, time.time() - t

    def ppl(model_dir):
        r = subprocess.run([qd, "eval", "--backend", "cpu", "--model", model_dir, "--data",
                            os.path.join(a.fixture, "eval.txt"), "--seqlen", "512", "--max-windows", "40", "--json"],
                           capture_output=True, text=True)
        try:
            return float(json.loads(r.stdout.strip().splitlines()[-1])["ppl"])
        except Exception:  # noqa: BLE001 - report, do not die
            return float("nan")

    def report(out):
        try:
            return json.load(open(os.path.join(out, "qdist_report.json")))
        except Exception:  # noqa: BLE001
            return {}

    models = [("pycode-16m", a.fixture, os.path.join(a.fixture, "calib.jsonl"), a.fixture_nsamples, 512)]
    if a.synthetic:
        models.append(("synthetic " + os.path.basename(a.synthetic.rstrip("/")), a.synthetic,
                       os.path.join(a.synthetic, "calib.jsonl"), 128, 2048))
    print("| model | check | P | schedule | wall s | checkpoint sha256[:16] | result |")
    print("|---|---|---|---|---|---|---|")
    scale_rows = []
    for name, model, calib, ns, sl in models:
        tag = name.split()[0]
        ref = os.path.join(a.out, f"{tag}-p1")
        r, t1 = quantize(model, calib, ns, sl, ref, 1)
        if r.returncode != 0:
            print(f"| {name} | P=1 run | 1 | exact | {t1:.1f} | - | FAIL: {r.stderr.strip()[-300:]} |")
            failed.append(f"{name} P=1")
            continue
        d1 = digest(ref)
        print(f"| {name} | reference | 1 | exact | {t1:.1f} | {d1} | - |", flush=True)
        scale_rows.append((name, 1, "exact", t1, report(ref)))
        for P in [int(x) for x in a.ranks.split(",") if int(x) > 1]:
            for sched in ("exact", "overlap"):
                out = os.path.join(a.out, f"{tag}-p{P}-{sched}")
                r, t = quantize(model, calib, ns, sl, out, P, sched)
                if r.returncode != 0:
                    print(f"| {name} | run | {P} | {sched} | {t:.1f} | - | FAIL: {r.stderr.strip()[-300:]} |")
                    failed.append(f"{name} P={P} {sched}")
                    continue
                d = digest(out)
                scale_rows.append((name, P, sched, t, report(out)))
                if sched == "exact":
                    ok = d == d1
                    if not ok:
                        failed.append(f"{name} P={P} exact not byte-identical")
                    print(f"| {name} | byte-identical to P=1 | {P} | exact | {t:.1f} | {d} | {'PASS' if ok else 'FAIL'} |",
                          flush=True)
                else:
                    note = "differs from exact (as it must)" if d != d1 else "EQUAL to exact (unexpected)"
                    if tag == "pycode-16m":
                        pe, po = ppl(os.path.join(a.out, f"{tag}-p{P}-exact")), ppl(out)
                        note += f"; ppl exact {pe:.4f}, overlap {po:.4f} ({100 * (po - pe) / pe:+.3f}%)"
                    print(f"| {name} | overlap | {P} | overlap | {t:.1f} | {d} | {note} |", flush=True)
        # kill rank 1 in the middle (at the last block, which P = 2 gives to rank 1), resume with 2 ranks
        nblocks = json.load(open(os.path.join(model, "config.json")))["num_hidden_layers"]
        kb = nblocks - 1
        out = os.path.join(a.out, f"{tag}-killed")
        r, t = quantize(model, calib, ns, sl, out, 2, env={"QD_INJECT_KILL": f"1:{kb}"})
        staged = sorted(p.name for p in Path(out + ".qdist-staging").glob("block-*.h5"))
        killed_ok = r.returncode != 0 and not os.path.exists(os.path.join(out, "qdist_report.json"))
        r2, t2 = quantize(model, calib, ns, sl, out, 2, extra=["--resume"])
        d = digest(out) if r2.returncode == 0 else "-"
        ok = killed_ok and r2.returncode == 0 and d == d1
        if not ok:
            failed.append(f"{name} kill+resume")
        print(f"| {name} | rank 1 killed at block {kb} of {nblocks} (rc {r.returncode}, {len(staged)} blocks staged, {t:.1f} s), "
              f"then --resume | 2 | exact | {t2:.1f} | {d} | {'PASS' if ok else 'FAIL ' + r2.stderr.strip()[-200:]} |",
              flush=True)

    print("\n| model | P | schedule | wall s | efficiency T1/(P*TP) | per rank: busy s / waiting s |")
    print("|---|---|---|---|---|---|")
    t1s = {n: t for n, P, s, t, _ in scale_rows if P == 1}
    for n, P, s, t, rep in scale_rows:
        ranks = rep.get("ranks", [])
        per = ", ".join(f"r{x.get('rank')}: {x.get('total_s', 0) - x.get('communication_wait_s', 0):.1f}/"
                        f"{x.get('communication_wait_s', 0):.1f}" for x in ranks)
        print(f"| {n} | {P} | {s} | {t:.1f} | {t1s[n] / (P * t):.2f} | {per} |")
    print("\nRESULT:", "FAIL " + "; ".join(failed) if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
