#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""moe_project.py - the full-model time of an MoE model projected from a one-block `qdist quantize` run
(issue 19 item 6: DeepSeek-V3's 58 MoE blocks on 1 and 8 GPUs from one DeepSeek-V3-shaped block).

  python3 bench/moe_project.py --report REPORT.json --model MODEL_DIR [--blocks 58] [--gpus 1,8]

The cost model (stated, not measured; the inputs are the report's per-phase seconds of the one block):
- per block on one GPU: read + forward + hessian + cholesky + sweep + install + reduce (the block's
  compute), and the staging write, which the stage writer thread overlaps with the next block's compute
  (staging_write_overlapped_s): a block costs max(compute, write). The one-time parts of a run (set-up,
  the embedding, the export's tail) are listed apart, as measured in the one-block run.
- P data-parallel ranks (today's layout, one GPU each; docs/architecture.md): every rank reads and
  dequantizes the whole block, factorizes every Hessian and installs every quantized Linear (not
  divided); forward, Hessian accumulation and the GPTQ sweep (rows split) divide by P. Added per block:
  the all-reduce of the fp64 Hessian sums over NVLink, 2 (P-1)/P x bytes / --nvlink-gbs, for the keys the
  run has (the attention's, the all-token key, the shared expert's down, every expert's down, and with
  --moe-calibration routed every expert's gate/up), and the gather of every Linear's codes and scales
  over MPI through host memory, (P-1)/P x bytes / --host-gbs. Block b is staged by rank b % P, so each
  writer writes blocks/P of them.
- "EP (ideal)": the same with the experts' factorizations and installs also divided by P and no expert
  Hessian all-reduce (each expert solved by one owner rank, its tokens sent to it), the upper bound of
  what expert parallelism (issue 19 item 3) can give on this model; the token exchange is not counted.
"""
import argparse
import json
import os
import sys

COMPUTE = ["read", "forward", "hessian", "cholesky", "sweep", "install", "reduce"]


def hessian_keys(cfg, routed):
    """the K of every Hessian key of one MoE block of cfg (DeepSeek-V3, Mixtral, Qwen MoE), as moe-quant.c makes them"""
    h = cfg["hidden_size"]
    experts = cfg.get("n_routed_experts") or cfg.get("num_local_experts") or cfg.get("num_experts") or 0
    mi = cfg.get("moe_intermediate_size") or cfg.get("intermediate_size")
    shared = (cfg.get("n_shared_experts") or 0) * mi or cfg.get("shared_expert_intermediate_size") or 0
    if cfg.get("kv_lora_rank"):  # MLA: [q_a, kv_a] on x, q_b, kv_b, o
        heads = cfg["num_attention_heads"]
        att = [h, cfg.get("q_lora_rank") or 0, cfg["kv_lora_rank"], heads * cfg["v_head_dim"]]
        att = [k for k in att if k]
    else:
        hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
        att = [h, cfg["num_attention_heads"] * hd]
    keys = att + [h] + ([shared] if shared else []) + [mi] * experts
    if routed:
        keys += [h] * experts
    return keys, experts, h, mi, shared


def project(report, cfg, blocks, gpus, nvlink_gbs, host_gbs):
    tot = report["totals"]
    ph = tot["phases_s"]
    rank = report["ranks"][0]
    nblk = max(1, sum(r.get("quantized", 0) for r in report["ranks"]))
    routed = report["settings"].get("moe_calibration") == "routed"
    keys, experts, h, mi, shared = hessian_keys(cfg, routed)
    per = {p: ph.get(p, 0) / nblk for p in COMPUTE}
    write = sum(r.get("staging_write_overlapped_s", 0) for r in report["ranks"]) / nblk
    once = tot.get("seconds", 0) - sum(per.values()) * nblk - ph.get("staging", 0)
    compute1 = sum(per.values())
    params = sum(m["N"] * m["K"] for m in report["modules"].values() if "N" in m) / nblk
    G = report["settings"].get("group_size", 128)
    code_bytes = params * (1 + 6 / max(G, 1))  # a byte per code, a float scale and an int zero per group
    hess_bytes = sum(8 * k * k for k in keys)
    expert_hess = sum(8 * k * k for k in keys[-experts * (2 if routed else 1):]) if experts else 0
    rows = []
    for P in gpus:
        if P == 1:
            rows.append(("1 GPU", P, compute1, write, max(compute1, write), 0, 0))
            continue
        div = per["forward"] / P + per["hessian"] / P + per["sweep"] / P
        fixed = per["read"] + per["cholesky"] + per["install"] + per["reduce"]
        ar = 2 * (P - 1) / P * hess_bytes / (nvlink_gbs * 1e9)
        ga = (P - 1) / P * code_bytes / (host_gbs * 1e9)
        c = div + fixed + ar + ga
        rows.append((f"{P} GPUs, data-parallel", P, c, write / P, max(c, write / P), ar, ga))
        ep_fixed = per["read"] + (per["cholesky"] + per["install"]) / P + per["reduce"]
        ar_ep = 2 * (P - 1) / P * (hess_bytes - expert_hess) / (nvlink_gbs * 1e9)
        c = div + ep_fixed + ar_ep + ga
        rows.append((f"{P} GPUs, EP (ideal)", P, c, write / P, max(c, write / P), ar_ep, ga))
    return per, write, once, rows, hess_bytes, code_bytes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--report", required=True, help="qdist_report.json of a one-block (or few-block) run")
    ap.add_argument("--model", required=True, help="the model directory of that run (its config.json)")
    ap.add_argument("--label", default="")
    ap.add_argument("--blocks", type=int, default=58, help="MoE blocks of the full model (DeepSeek-V3: 61 - 3 dense)")
    ap.add_argument("--gpus", default="1,8")
    ap.add_argument("--nvlink-gbs", type=float, default=360.0, help="all-reduce bus bandwidth between the GPUs, GB/s")
    ap.add_argument("--host-gbs", type=float, default=10.0, help="MPI all-gather bandwidth through host memory, GB/s")
    a = ap.parse_args()
    try:
        report = json.load(open(a.report))
        cfg = json.load(open(os.path.join(a.model, "config.json")))
    except (OSError, ValueError) as e:
        print(f"moe_project: cannot read the report or the config: {e}", file=sys.stderr)
        return 1
    gpus = [int(x) for x in a.gpus.split(",")]
    per, write, once, rows, hb, cb = project(report, cfg, a.blocks, gpus, a.nvlink_gbs, a.host_gbs)
    cal = report["settings"].get("moe_calibration", "?")
    print(f"\nProjection {a.label} (--moe-calibration {cal}): {a.blocks} MoE blocks from the measured block "
          f"(bench/moe_project.py cost model; NVLink all-reduce {a.nvlink_gbs:g} GB/s, host all-gather "
          f"{a.host_gbs:g} GB/s)")
    print("measured per block: " + ", ".join(f"{p} {v:.2f} s" for p, v in per.items()) +
          f"; staging write {write:.2f} s (overlapped by the writer thread); one-time {once:.1f} s; "
          f"Hessian fp64 sums {hb / 1e9:.1f} GB, codes+scales {cb / 1e9:.1f} GB per block")
    print("\n| layout | GPUs | compute s/block | staging write s/block/rank | s/block | Hessian all-reduce s | "
          f"code gather s | {a.blocks} blocks min |")
    print("|---|---|---|---|---|---|---|---|")
    for label, P, c, w, blk, ar, ga in rows:
        print(f"| {label} | {P} | {c:.2f} | {w:.2f} | {blk:.2f} | {ar:.2f} | {ga:.2f} | {blk * a.blocks / 60:.1f} |")
    print("\nissue 19's targets: a DeepSeek-V3 block (all experts calibrated) <= 20 s on one H200; the 58 MoE blocks "
          "<= 20 min on one GPU and <= 3 min on 8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
