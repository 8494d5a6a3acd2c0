#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""dp_cost_model.py - predicted GPTQ wall time of data-parallel ranks (issue 18 item 6c) from one
GPU's measured per-phase times and the communication each block needs.

    python3 bench/dp_cost_model.py [--r8b REPORT] [--r70b REPORT] [--nvlink-gbs 350] [--ib-gbs 45]

Inputs, all measured or read from the model's shape, none fitted:
- per-block seconds of each phase on one H200 (qdist_report.json `ranks[0].phases_s` divided by the
  blocks; defaults: docs/device-logs/2026-12-04-peer-8b-gptq-streamed-qdist-report.json, 32 blocks
  of Llama-3-8B, and 2026-12-04-e2e-70b-1block-report.json, one block of Llama-3-70B);
- the fixed cost of a run outside the blocks (start-up, embedding, export tail; measured wall time
  minus the blocks' phases for the 8B, scaled by the embedding size for the 70B);
- bytes per block per rank: the four Hessians all-reduced as fp64 sums (8 sum K_g^2: the chunks' terms
  are summed in fp64 so that the result does not depend on P), the quantized rows all-gathered (one
  byte per code plus 8 bytes per group and row, as src/quant/gptq-dp.c sends them);
- link speeds: NCCL all-reduce bus bandwidth inside one node over NVLink (--nvlink-gbs, 350 GB/s,
  below what nccl-tests report for 8 x H100/H200 SXM) and across nodes over InfiniBand (--ib-gbs,
  45 GB/s per GPU: one 400 Gb/s NIC per GPU, rail-optimised).

The data-parallel layout (docs/architecture.md) splits the forward, the Hessian accumulation, the
sweep and the install by 1/P (sequences, and output rows for the sweep); every rank factorizes each
reduced Hessian itself (the true-sequential order makes each group's Hessian depend on the previous
group's quantized output, so a block's four factorizations cannot be spread over ranks), so the
Cholesky phase does not shrink with P. Communication is counted fully exposed (not overlapped), so
the prediction is an upper bound for that part. A ring all-reduce moves 2 (P-1)/P of the buffer per
rank, an all-gather (P-1)/P.
"""
import argparse
import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGS = os.path.join(REPO, "docs", "device-logs")

# Llama-3 shapes: hidden, q out, kv out, intermediate, blocks, vocab
SHAPES = {"llama3-8b": (4096, 4096, 1024, 14336, 32, 128256), "llama3-70b": (8192, 8192, 1024, 28672, 80, 128256)}
SPLIT = ("read", "forward", "hessian", "sweep", "install")  # shrink with P
KEEP = ("cholesky", "other", "staging")                      # every rank pays them per block


def per_block(report):
    r = json.load(open(report))
    rk = r["ranks"][0]
    nb = rk["blocks"]
    ph = {k: v / nb for k, v in rk["phases_s"].items()}
    return ph, nb, r["totals"]


def volumes(shape):
    h, qo, kvo, inter, _, _ = shape
    hess = 8 * (h * h + qo * qo + h * h + inter * inter)           # q/k/v, o, gate/up, down inputs (fp64)
    params = h * (qo + 2 * kvo) + qo * h + 2 * h * inter + inter * h
    groups = params // 128
    gathered = params + 8 * groups
    return hess, gathered, params


def predict(ph, shape, fixed, P, nodes, nvlink, ib, split=SPLIT, keep=KEEP):
    hess, gathered, _ = volumes(shape)
    nb = shape[4]
    comp = sum(ph.get(k, 0) for k in split) / P + sum(ph.get(k, 0) for k in keep)
    bw = (nvlink if nodes == 1 else ib) * 1e9
    comm = (2 * (P - 1) / P * hess + (P - 1) / P * gathered) / bw if P > 1 else 0.0
    return fixed + nb * (comp + comm), comp, comm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--r8b", default=os.path.join(LOGS, "2026-12-04-peer-8b-gptq-streamed-qdist-report.json"))
    ap.add_argument("--wall8b", type=float, default=49.7, help="measured wall seconds of that run")
    ap.add_argument("--r70b", default=os.path.join(LOGS, "2026-12-04-e2e-70b-1block-report.json"))
    ap.add_argument("--nvlink-gbs", type=float, default=350.0)
    ap.add_argument("--ib-gbs", type=float, default=45.0)
    a = ap.parse_args()
    ph8, nb8, _ = per_block(a.r8b)
    ph70, _, _ = per_block(a.r70b)
    # the 70B block's staging wait is its own HDF5 write at the end of a one-block run; in a full run it
    # overlaps the next block, as it does in the 8B run (0.03 s per block there)
    ph70 = dict(ph70, staging=ph8.get("staging", 0))
    # fixed: the 8B's wall time outside the per-block phases (start-up, the calibration embedding's
    # transfer, the export tail, and about 8 s outside qdist's own clock that this run did not break
    # down: counted as growing with the blocks, so the 70B gets 80/32 of it plus its own transfer)
    fixed8 = a.wall8b - nb8 * sum(ph8.get(k, 0) for k in SPLIT + KEEP)
    fixed70 = (fixed8 - nb8 * ph8.get("transfer", 0)) * 80 / nb8 + ph70.get("transfer", 0)
    print("| model | GPUs | predicted s | per block: compute s | per block: communication s | efficiency vs 1 GPU "
          "| predicted s if the factorizations and the per-block host work were split too |")
    print("|---|---|---|---|---|---|---|")
    for name, ph, fixed in (("llama3-8b", ph8, fixed8), ("llama3-70b", ph70, fixed70)):
        shape = SHAPES[name]
        t1, _, _ = predict(ph, shape, fixed, 1, 1, a.nvlink_gbs, a.ib_gbs)
        for P, nodes in ((1, 1), (2, 1), (4, 1), (8, 1), (16, 2)):
            t, comp, comm = predict(ph, shape, fixed, P, nodes, a.nvlink_gbs, a.ib_gbs)
            gpus = f"{P}" if nodes == 1 else f"2 x 8 (IB)"
            tw, _, _ = predict(ph, shape, fixed, P, nodes, a.nvlink_gbs, a.ib_gbs, SPLIT + ("cholesky", "other"),
                               ("staging",))
            print(f"| {name} | {gpus} | {t:.1f} | {comp:.3f} | {comm:.3f} | {t1 / (P * t) * 100:.0f}% | {tw:.1f} |")
    h8, g8, p8 = volumes(SHAPES["llama3-8b"])
    h70, g70, p70 = volumes(SHAPES["llama3-70b"])
    print(f"\nper block: 8B Hessians {h8 / 1e9:.2f} GB all-reduced, rows {g8 / 1e6:.0f} MB gathered; "
          f"70B Hessians {h70 / 1e9:.2f} GB, rows {g70 / 1e6:.0f} MB")
    print(f"fixed (outside the blocks): 8B {fixed8:.1f} s, 70B {fixed70:.1f} s; per-block phases 8B "
          + ", ".join(f"{k} {ph8.get(k, 0):.3f}" for k in SPLIT + KEEP)
          + "; 70B " + ", ".join(f"{k} {ph70.get(k, 0):.3f}" for k in SPLIT + KEEP))


if __name__ == "__main__":
    main()
