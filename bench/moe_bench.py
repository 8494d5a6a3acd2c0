#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""moe_bench.py - the MoE rows of issue 19 (items 5 and 6), each piece time-boxed, printed as markdown.

  python3 bench/moe_bench.py quality --qdist Q --model DIR --calib JSONL --eval TEXT [--out DIR]
  python3 bench/moe_bench.py speed   --qdist Q --model DIR [--out DIR]

quality (a trained Qwen3-MoE model, fixtures/train/train_fixture.py C): qdist GPTQ W4 g128 and AWQ W4
g128 (asymmetric, its default) with --moe-calibration routed and all, RTN, and GPTQ routed on a copy whose expert --dead-expert of one block
(--dead-block; default the most separable one) is made unreachable (its router row set to -M times a direction that the router's inputs on
the calibration ids point along (fitted from their mean), so its logit is very negative for every token
whose input does; the report's routed-token count says how many still reach it); each export and the original scored by `qdist eval` (same windows); llm-compressor GPTQ on the
same ids as a peer row (bench/peer/peer_bench.py --peer-job, its own process; failures become rows).
The dead expert's report entries (routed tokens, fallback) are printed under the table.

speed (a synthetic Mixtral-8x7B block, bench/gen_synthetic.py --arch mixtral-8x7b --blocks 1, or a
DeepSeek-V3 one, --arch deepseek-v3): qdist GPTQ W4 g128 compressed-tensors with --moe-calibration all
and routed, wall time and the report's phases (bench/e2e_phases.py), then llm-compressor GPTQ (oneshot,
moe_calibrate_all_experts=True, its default) on the same ids (--no-peer: none); the ratio of the walls.
--project-blocks N adds the full model's projection on 1 and 8 GPUs from each run's report
(bench/moe_project.py); --drop-outputs deletes each export (keeping its report) before the next run.

Exit status 1 when a qdist row failed (a peer failure is only reported).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "peer"))
import peer_bench  # noqa: E402  (load_ids: the calibration ids both tools read)


def log(msg):
    print(f"== {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def run(cmd, log_path, timeout):
    log(" ".join(map(str, cmd)) + f"  (timeout {timeout} s)")
    t0 = time.time()
    with open(log_path, "w") as lf:
        try:
            rc = subprocess.run(list(map(str, cmd)), stdout=lf, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.time() - t0
    if rc != 0:
        with open(log_path, errors="replace") as lf:
            tail = lf.read().strip().splitlines()[-3:]
        log(f"rc={rc} after {wall:.1f} s; last lines of {log_path}: " + " / ".join(tail))
    return rc, wall


def quantize(a, model, out, extra, timeout, fmt="fake"):
    cmd = [a.qdist, "quantize", "--backend", a.backend, "--model", model, "--output", out, "--calib", a.ids_file,
           "--nsamples", a.nsamples, "--seqlen", a.seqlen, "--bits", 4, "--group-size", a.group_size, "--format", fmt,
           "--overwrite", "--progress", "none"] + extra
    return run(cmd, out + ".log", timeout)


def report(out):
    try:
        return json.load(open(os.path.join(out, "qdist_report.json")))
    except (OSError, ValueError):
        return None


def qdist_ppl(a, model):
    cmd = [a.qdist, "eval", "--backend", a.backend, "--model", model, "--data", a.eval, "--seqlen", a.eval_seqlen,
           "--max-windows", a.eval_windows, "--json", "--quiet"]
    try:
        p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=a.eval_timeout)
    except subprocess.TimeoutExpired:
        return None, "eval timeout"
    if p.returncode != 0:
        return None, "eval failed: " + " / ".join(p.stderr.strip().splitlines()[-2:])
    return json.loads(p.stdout.strip().splitlines()[-1])["ppl"], ""


def hf_ppl(a, model):
    cmd = [sys.executable, os.path.join(HERE, "..", "tests", "ref", "hf_ppl.py"), "--model", model, "--data", a.eval,
           "--seqlen", a.eval_seqlen, "--max-windows", a.eval_windows, "--dtype", "fp32", "--device", a.device, "--json"]
    try:
        p = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=a.eval_timeout)
        return json.loads(p.stdout.strip().splitlines()[-1])["ppl"] if p.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def peer_gptq(a, model, out, timeout):
    os.makedirs(out, exist_ok=True)
    cmd = [sys.executable, os.path.join(HERE, "peer", "peer_bench.py"), "--peer-job", "gptq", "--model", model,
           "--ids-file", a.ids_file, "--peer-out", out, "--device", a.device]
    rc, wall = run(cmd, out + ".log", timeout)
    note = ""
    try:
        with open(out + ".log", errors="replace") as lf:
            text = lf.read()
        if rc != 0:
            errs = [ln for ln in text.splitlines() if "Error" in ln or "error" in ln]
            note = (errs[-1] if errs else text.strip().splitlines()[-1:][0] if text.strip() else "no output")[:160]
        elif "linearize" in text.lower() or "not been linearized" in text:
            note = "MoE experts linearized by llm-compressor"
    except OSError:
        pass
    return rc, wall, note.replace("|", "/")


# ------------------------------------------------------------------------------------------------

def make_unreachable(a, src, dst):
    """Copy src to dst with expert a.dead_expert of one block unreachable for (almost) every calibration
    token: its router row becomes -M * v, v a direction the router's inputs point along (fitted per
    block from their mean; the block where the most inputs do is taken, or a.dead_block when >= 0).
    Returns (block, router key, share of calibration tokens whose router input points along v)."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM
    dev = a.device if torch.cuda.is_available() else "cpu"
    m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).to(dev).eval()
    layers = m.model.layers
    blocks = [a.dead_block] if a.dead_block >= 0 else list(range(len(layers)))
    xs = {b: [] for b in blocks}
    hooks = [layers[b].mlp.gate.register_forward_pre_hook(
        lambda mod, args, b=b: xs[b].append(args[0].reshape(-1, args[0].shape[-1]).float())) for b in blocks]
    ids = [json.loads(ln) for ln in open(a.ids_file)]
    with torch.no_grad():
        for r in ids:
            m(input_ids=torch.tensor(r, device=dev)[None])
    for h in hooks:
        h.remove()
    del m
    best = None
    for b in blocks:
        x = torch.cat(xs[b])
        xn = x / x.norm(dim=1, keepdim=True)
        # a direction every router input points along, if there is one (the origin outside their convex
        # hull): from the mean, a few hundred steps on a margin loss
        v = xn.mean(0).clone().requires_grad_(True)
        opt = torch.optim.Adam([v], lr=0.01)
        for _ in range(500):
            loss = torch.nn.functional.softplus(-20 * (xn @ v) / v.norm()).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        v = (v / v.norm()).detach()
        share = float((x @ v > 0).float().mean())
        log(f"block {b}: {share:.2%} of the calibration tokens' router inputs point along the fitted direction")
        if best is None or share >= best[2]:
            best = (b, v, share)
    b, v, share = best
    shutil.copytree(src, dst, dirs_exist_ok=True)
    key = f"model.layers.{b}.mlp.gate.weight"
    idx = os.path.join(dst, "model.safetensors.index.json")
    shard = json.load(open(idx))["weight_map"][key] if os.path.exists(idx) else "model.safetensors"
    path = os.path.join(dst, shard)
    t = load_file(path)
    w = t[key].clone()
    w[a.dead_expert] = (-a.dead_scale * v).to(w.dtype).cpu()
    t[key] = w
    save_file(t, path, metadata={"format": "pt"})
    return b, key, share


def quality(a):
    rows, failed = [], False
    base, note = qdist_ppl(a, a.model)
    rows.append(("original (bf16 checkpoint)", "-", base, "-", note))
    g = f"g{a.group_size}"  # the row names the groups that were used
    runs = [(f"qdist GPTQ W4 {g}", "routed", a.model, ["--method", "gptq", "--moe-calibration", "routed"]),
            (f"qdist GPTQ W4 {g}", "all", a.model, ["--method", "gptq", "--moe-calibration", "all"]),
            (f"qdist AWQ W4 {g}", "routed", a.model, ["--method", "awq", "--moe-calibration", "routed"]),
            (f"qdist AWQ W4 {g}", "all", a.model, ["--method", "awq", "--moe-calibration", "all"]),
            (f"qdist RTN W4 {g}", "-", a.model, ["--method", "rtn"])]
    dead = os.path.join(a.out, "dead-src")
    try:
        a.dead_block, key, share = make_unreachable(a, a.model, dead)
        log(f"unreachable copy: {key} row {a.dead_expert} = -{a.dead_scale} x a fitted direction; "
            f"{share:.1%} of calibration tokens point along it (the rest can still reach it)")
        # tokens whose router input points against the direction can still reach the expert: the floor is
        # raised above their number so that the fallback shows even then (the count is reported either way)
        ntok = a.nsamples * a.seqlen
        floor = max(16, int((1 - share) * ntok) + 1)
        runs.append((f"qdist GPTQ W4 {g}, expert {a.dead_expert} of block {a.dead_block} unreachable, "
                     f"--moe-min-tokens {floor}", "routed",
                     dead, ["--method", "gptq", "--moe-calibration", "routed", "--moe-min-tokens", floor]))
        base_dead, _ = qdist_ppl(a, dead)
        rows.append((f"original, expert {a.dead_expert} of block {a.dead_block} unreachable", "-", base_dead, "-", ""))
    except Exception as e:  # noqa: BLE001 - reported as a row, the other rows go on
        failed = True
        rows.append(("unreachable-expert copy", "-", None, "-", f"failed: {e!r}"[:160]))
    dead_out = None
    for label, cal, model, extra in runs:
        out = os.path.join(a.out, f"q{len(rows)}")
        rc, wall = quantize(a, model, out, extra, a.quant_timeout)
        if rc != 0:
            failed = True
            rows.append((label, cal, None, f"{wall:.0f}", f"quantize rc={rc} ({out}.log)"))
            continue
        p, note = qdist_ppl(a, out)
        failed |= p is None
        rows.append((label, cal, p, f"{wall:.0f}", note))
        if model == dead:
            dead_out = out
            mods = {k: v for k, v in (report(out) or {}).get("modules", {}).items()
                    if k.startswith(f"model.layers.{a.dead_block}.mlp.experts.{a.dead_expert}.")}
            toks = sorted({v.get("expert_tokens") for v in mods.values()}, key=str)
            fb = sorted({v.get("fallback") or "none" for v in mods.values()})
            finite = all(isinstance(v.get("loss"), (int, float)) and v["loss"] == v["loss"] for v in mods.values())
            failed |= len(mods) != 3 or not finite
            rows[-1] = rows[-1][:4] + ("; ".join(x for x in (note, f"{len(mods)} Linears reported, routed tokens "
                                       f"{toks}, fallback: {'/'.join(fb)}, losses finite: {finite}") if x),)
    if not a.no_peer:
        out = os.path.join(a.out, "llmc-gptq")
        rc, wall, note = peer_gptq(a, a.model, out, a.peer_timeout)
        p = None
        if rc == 0:
            p, enote = qdist_ppl(a, out)
            if p is None:  # qdist cannot read this export: transformers + compressed-tensors score it
                p = hf_ppl(a, out)
                enote = f"qdist {enote}; ppl by tests/ref/hf_ppl.py (fp32)" if p is not None else enote
            note = "; ".join(x for x in (note, enote) if x)
        rows.append(("llm-compressor GPTQ W4A16 g128 (actorder None)", "all (moe_calibrate_all_experts)", p,
                     f"{wall:.0f}", note if rc == 0 else f"rc={rc}: {note}"))
    print(f"\nMoE quality: {a.model}, {a.nsamples} x {a.seqlen} calibration ids, qdist eval "
          f"({a.eval_windows} windows of {a.eval_seqlen}, backend {a.backend}), {time.strftime('%Y-%m-%d')}")
    print("| method | calibration | ppl | vs original | wall s | note |")
    print("|---|---|---|---|---|---|")
    for label, cal, p, wall, note in rows:
        rel = f"{(p / base - 1) * 100:+.2f}%" if p is not None and base else "-"
        print(f"| {label} | {cal} | {'-' if p is None else f'{p:.4f}'} | {rel} | {wall} | {note} |")
    if dead_out:
        rep = report(dead_out) or {}
        pre = f"model.layers.{a.dead_block}.mlp.experts."
        print(f"\nreport of the unreachable-expert run, block {a.dead_block} (routed tokens per expert; fallback):")
        print("| module | expert | routed tokens | fallback | loss |")
        print("|---|---|---|---|---|")
        for k, v in sorted(rep.get("modules", {}).items()):
            if k.startswith(pre) and (v.get("expert") == a.dead_expert or k.endswith("gate_proj")):
                print(f"| {k} | {v.get('expert')} | {v.get('expert_tokens')} | {v.get('fallback') or '-'} | "
                      f"{v.get('loss')} |")
    return 1 if failed else 0


def speed(a):
    failed = False
    rows = []
    for cal in a.moe_calibrations.split(","):
        out = os.path.join(a.out, f"qdist-{cal}")
        rc, wall = quantize(a, a.model, out, ["--method", "gptq", "--moe-calibration", cal], a.quant_timeout,
                            fmt="compressed-tensors")
        failed |= rc != 0
        rep = os.path.join(out, "qdist_report.json")
        if a.drop_outputs:  # the disk holds one export at a time: its report is kept beside it
            kept = os.path.join(a.out, f"qdist-{cal}-report.json")
            if os.path.exists(rep):
                shutil.copy(rep, kept)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(out + ".qdist-staging", ignore_errors=True)
            rep = kept
        rows.append((f"qdist GPTQ ({cal})", rc, wall, rep))
    peer = None
    if not a.no_peer:
        out = os.path.join(a.out, "llmc-gptq")
        rc, wall, note = peer_gptq(a, a.model, out, a.peer_timeout)
        t = {}
        try:
            t = json.load(open(os.path.join(out, "peer_timing.json")))
        except (OSError, ValueError):
            pass
        peer = (rc, wall, note, t)
        shutil.rmtree(out, ignore_errors=True)
    print(f"\nMoE speed: {a.model}, {a.nsamples} x {a.seqlen} calibration ids, GPTQ W4 g128, "
          f"{time.strftime('%Y-%m-%d')}")
    subprocess.run([sys.executable, os.path.join(HERE, "e2e_phases.py")] +
                   [f"{lab}={rep}" for lab, rc, _, rep in rows if rc == 0])
    print("\n| run | rc | wall s | llm-compressor load / oneshot / save s | peer wall / this wall | note |")
    print("|---|---|---|---|---|---|")
    for lab, rc, wall, _ in rows:
        ratio = "-"
        if peer and rc == 0 and peer[0] in (0, "timeout"):  # a timed-out peer: a lower bound
            ratio = (">= " if peer[0] == "timeout" else "") + f"{peer[1] / wall:.2f}x"
        print(f"| {lab} | {rc} | {wall:.1f} | - | {ratio} | |")
    if peer:
        rc, wall, note, t = peer
        phases = " / ".join(f"{t[k]:.1f}" for k in ("load_s", "quantize_s", "save_s")) if t else "-"
        print(f"| llm-compressor GPTQ (moe_calibrate_all_experts=True) | {rc} | {wall:.1f} | {phases} | {'1.00x' if rc == 0 else '-'} | {note} |")
    for lab, rc, _, rep in rows:
        if a.project_blocks and rc == 0:
            sys.stdout.flush()
            subprocess.run([sys.executable, os.path.join(HERE, "moe_project.py"), "--report", rep, "--model", a.model,
                            "--label", lab, "--blocks", str(a.project_blocks)])
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["quality", "speed"])
    ap.add_argument("--qdist", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", help="JSONL of id arrays or {text} lines (default: random ids)")
    ap.add_argument("--nsamples", type=int)
    ap.add_argument("--seqlen", type=int)
    ap.add_argument("--eval", help="quality: the text file both kinds of model are scored on")
    ap.add_argument("--eval-seqlen", type=int, default=1024)
    ap.add_argument("--eval-windows", type=int, default=32)
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--device", default="cuda", help="torch device of the peer and of the unreachable-expert probe")
    ap.add_argument("--out", default="/tmp/moe-bench")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--group-size", type=int, default=128, help="qdist's groups (the peer always uses 128)")
    ap.add_argument("--dead-block", type=int, default=-1, help="-1: the block whose router inputs are most separable")
    ap.add_argument("--dead-expert", type=int, default=5)
    ap.add_argument("--dead-scale", type=float, default=1e4)
    ap.add_argument("--moe-calibrations", default="all,routed", help="speed: qdist runs, in order")
    ap.add_argument("--quant-timeout", type=int, default=120)
    ap.add_argument("--project-blocks", type=int, default=0, help="speed: project N MoE blocks (moe_project.py)")
    ap.add_argument("--drop-outputs", action="store_true", help="speed: delete each export after its run")
    ap.add_argument("--eval-timeout", type=int, default=60)
    ap.add_argument("--peer-timeout", type=int, default=180)
    a = ap.parse_args()
    if a.what == "quality" and not a.eval:
        ap.error("quality needs --eval TEXT")
    a.nsamples = a.nsamples or (64 if a.what == "quality" else 128)
    a.seqlen = a.seqlen or (512 if a.what == "quality" else 2048)
    os.makedirs(a.out, exist_ok=True)
    a.ids_file = os.path.join(a.out, "calib-ids.jsonl")
    with open(a.ids_file, "w") as f:
        for r in peer_bench.load_ids(a.model, a.calib, a.nsamples, a.seqlen):
            f.write(json.dumps(r) + "\n")
    return quality(a) if a.what == "quality" else speed(a)


if __name__ == "__main__":
    sys.exit(main())
