#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""summarize.py - the side-by-side table (markdown) of bench-gptq-layer and torch_gptq_ref logs:
per layer prep + chol_inv + sweep in ms for each run, Hessians per input, block totals, and the
speed-up of each qdist run over the torch reference of the same shapes.

  python3 bench/summarize.py LOG...
"""
import re
import sys

runs = []  # dicts: label, model, layers {name: ms}, hess {name: ms}, block line
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    cur = None
    for ln in lines:
        if ln.startswith("# bench-gptq-layer") or ln.startswith("# torch_gptq_ref"):
            cur = {"head": ln, "layers": {}, "shape": {}, "hess": {}, "block": None}
            runs.append(cur)
            m = re.search(r": (\S+) shapes", ln)
            cur["model"] = m.group(1) if m else "?"
            if "torch_gptq_ref" in ln:
                cur["label"] = "torch " + ("tf32" if "tf32 True" in ln else "fp32")
            else:
                m = re.search(r"backend (\S+) \(math (\S+)\)", ln)
                cur["label"] = f"qdist {m.group(1)} {m.group(2)}" if m else "qdist"
        elif cur is None:
            continue
        elif ln.startswith("hessian"):
            m = re.match(r"hessian (\S+)\s+K=(\d+)\s+([\d.]+) ms", ln)
            if m:
                cur["hess"][f"{m.group(1)} (K={m.group(2)})"] = float(m.group(3))
        elif ln.startswith("layer"):
            m = re.match(r"layer (\S+)\s+(\d+) x (\d+)\s.*prep\s+([\d.]+) ms\s+chol_inv\s+([\d.]+) ms\s+sweep\s+([\d.]+) ms", ln)
            if m:
                cur["layers"][m.group(1)] = float(m.group(4)) + float(m.group(5)) + float(m.group(6))
                cur["shape"][m.group(1)] = f"{m.group(2)} x {m.group(3)}"
        elif ln.startswith("BLOCK"):
            cur["block"] = ln
        elif ln.startswith("FORWARD"):
            cur["forward"] = ln

for model in sorted({r["model"] for r in runs}):
    rs = [r for r in runs if r["model"] == model and r["layers"]]
    if not rs:
        continue
    ref = next((r for r in rs if r["label"].startswith("torch")), None)
    print(f"\n### {model}: per layer, damping + inverse Cholesky + column sweep (ms)\n")
    print("| layer | N x K | " + " | ".join(r["label"] for r in rs) + " |")
    print("|---|---|" + "---|" * len(rs))
    names = list(rs[0]["layers"])
    for n in names:
        cells = []
        for r in rs:
            v = r["layers"].get(n)
            s = f"{v:.1f}" if v is not None else "-"
            if ref and r is not ref and v and ref["layers"].get(n):
                s += f" ({ref['layers'][n] / v:.0f}x)"
            cells.append(s)
        print(f"| {n} | {rs[0]['shape'].get(n, '')} | " + " | ".join(cells) + " |")
    tot = [sum(r["layers"].values()) for r in rs]
    print("| **7 layers** | | " + " | ".join(f"**{t:.1f}**" + (f" ({sum(ref['layers'].values()) / t:.0f}x)" if ref and r is not ref else "")
                                            for t, r in zip(tot, rs)) + " |")
    print(f"\n### {model}: Hessians over the block's four distinct inputs (ms)\n")
    print("| input | " + " | ".join(r["label"] for r in rs) + " |")
    print("|---|" + "---|" * len(rs))
    for h in rs[0]["hess"]:
        print(f"| {h} | " + " | ".join(f"{r['hess'].get(h, float('nan')):.1f}" for r in rs) + " |")
    print()
    for r in rs:
        if r["block"]:
            print("    " + r["block"])
        if r.get("forward"):
            print("    " + r["forward"])
