#!/usr/bin/env python3
"""Diagnose a GPTQ row of quality_table.py where qdist and the reference differ (docs/quality.md).

Run after quality_table.py; it reuses that run's --out directory: calib_ids.jsonl (the calibration
both sides used) and qdist's `--format fake` output gptq[-act]-w<bits>/.

  --mode forced  teacher forcing: the reference quantizes every layer itself, from the inputs that
                 qdist's chain produced (quantize_model(force=qdist's weights), as in
                 tests/py/test_ref_model.py). Prints per layer the fraction of equal integer codes
                 (rounding ties excluded, qref.match_codes) and qdist's vs the reference's loss.
                 Equal codes and losses mean the two quantizers agree on the same inputs.
  --mode free    the free-running reference in --dtype (e.g. float64 next to the table's float32):
                 its ppl on the same windows shows how far two correct references drift apart.

  python3 bench/quality/gptq_gap.py --model fixtures/pycode-16m --out /tmp/quality-run/out \
      --bits 3 [--act-order] --dtype float64 --mode forced|free \
      [--eval fixtures/pycode-16m/eval.txt --eval-seqlen 1024 --max-windows 32]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "ref"))
import qforward as qf  # noqa: E402
import qref_model as qm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True, help="quality_table.py's --out directory")
    ap.add_argument("--bits", type=int, required=True)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--act-order", action="store_true")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--mode", default="forced", choices=["forced", "free"])
    ap.add_argument("--eval", default=None, help="free mode: eval text (default MODEL/eval.txt)")
    ap.add_argument("--eval-seqlen", type=int, default=1024)
    ap.add_argument("--max-windows", type=int, default=32)
    a = ap.parse_args()

    cfg, w = qf.load_model_dir(a.model)
    calib = np.array(qm.read_ids_jsonl(os.path.join(a.out, "calib_ids.jsonl")))
    dt = np.dtype(a.dtype).type
    t0 = time.time()
    if a.mode == "forced":
        qdir = os.path.join(a.out, f"gptq{'-act' if a.act_order else ''}-w{a.bits}")
        got = {}
        for fn in sorted(os.listdir(qdir)):
            if fn.startswith("model") and fn.endswith(".safetensors"):
                got.update(qf.read_safetensors(os.path.join(qdir, fn)))
        with open(os.path.join(qdir, "qdist_report.json")) as f:
            losses = {k: v["loss"] for k, v in json.load(f)["modules"].items()}
        force = {k[:-len(".weight")]: v for k, v in got.items()
                 if k.endswith(".weight") and k[:-len(".weight")] + ".qd_codes" in got}
        r = qm.quantize_model((cfg, w), calib, "gptq", a.bits, a.group_size, True, act_order=a.act_order,
                              dtype=dt, chain_f16_scales=True, force=force)
        codes = {n: got[n + ".qd_codes"] for n in r["layers"]}
        per, frac = qm.compare_codes(r["layers"], codes)
        lq = lr = 0.0
        for n, (eq, tot, ties) in per.items():
            ql, rl = losses[n], r["layers"][n]["loss"]
            lq += ql
            lr += rl
            print(f"{n:36s} codes equal {eq / tot:.5f} ({tot - eq} differ, {ties} tie-excluded) "
                  f"loss qdist {ql:.6g} ref {rl:.6g} rel {(ql - rl) / rl:+.2e}")
        print(f"ALL codes equal {frac:.6f}; total loss qdist {lq:.6g} ref {lr:.6g} "
              f"rel {(lq - lr) / lr:+.3e}; {time.time() - t0:.0f}s")
    else:
        r = qm.quantize_model((cfg, w), calib, "gptq", a.bits, a.group_size, True, act_order=a.act_order,
                              dtype=dt, chain_f16_scales=True)
        toks = qm.tokenize_file(a.model, a.eval or os.path.join(a.model, "eval.txt"))
        toks = toks[: a.max_windows * a.eval_seqlen]
        ppl = qm.perplexity(r, toks, a.eval_seqlen)[0]
        print(f"free-running reference {a.dtype} gptq{' act-order' if a.act_order else ''} W{a.bits}: "
              f"ppl {ppl:.5f} on {len(toks) // a.eval_seqlen} windows of {a.eval_seqlen}; total loss "
              f"{sum(v['loss'] for v in r['layers'].values()):.6g}; {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
