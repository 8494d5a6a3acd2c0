#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""e2e_phases.py - the per-phase table of one or more `qdist quantize` runs, from their
qdist_report.json (ranks[].phases_s, memory, quantize_s), as markdown.

  python3 bench/e2e_phases.py LABEL=REPORT.json [LABEL=REPORT.json ...]

Columns: blocks quantized, total seconds (report totals), seconds per block (rank compute / blocks),
each phase in seconds (summed over ranks), the backend's GPU memory peak and the device's.
"""
import json
import sys

PHASES = ["read", "forward", "hessian", "cholesky", "sweep", "install", "awq", "staging", "transfer", "wait",
          "write", "reduce", "other"]


def row(label, path):
    try:
        r = json.load(open(path))
    except (OSError, ValueError) as e:
        return f"| {label} | report unreadable: {e} |"
    ranks = r.get("ranks", [])
    tot = r.get("totals", {})
    ph = tot.get("phases_s", {})
    blocks = sum(x.get("quantized", 0) for x in ranks) or 1
    quant = sum(x.get("quantize_s", 0) for x in ranks)
    peak = max((x.get("memory", {}).get("backend_peak_bytes", 0) for x in ranks), default=0)
    used = max((x.get("memory", {}).get("device_used_peak_bytes", 0) for x in ranks), default=0)
    # reports before the rename (docs/device-logs) call it gptq_staged_path
    resident = any(x.get("memory", {}).get("gptq_resident_path", x.get("memory", {}).get("gptq_staged_path"))
                   for x in ranks)
    cells = [label, str(blocks), f"{tot.get('seconds', 0):.1f}", f"{quant / blocks:.2f}"]
    cells += [f"{ph.get(p, 0):.2f}" for p in PHASES]
    cells += [f"{peak / 1e9:.1f}", f"{used / 1e9:.1f}", "yes" if resident else "no"]
    return "| " + " | ".join(cells) + " |"


def main():
    head = ["run", "blocks", "total s", "s/block"] + PHASES + ["GPU peak GB (qdist)", "GPU used GB", "resident"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for a in sys.argv[1:]:
        label, _, path = a.partition("=")
        print(row(label, path))


if __name__ == "__main__":
    main()
