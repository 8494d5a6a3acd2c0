#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""peer_bench.py - qdist against llm-compressor on the same checkpoint and the same calibration ids,
in one run on one machine, printed as one table.

  python3 bench/peer/peer_bench.py --model DIR [--calib FILE] [--nsamples 128] [--seqlen 2048]
        [--methods gptq,gptq-act,awq] [--eval TEXT --eval-seqlen 1024 --eval-windows 32]
        [--qdist build/qdist] [--qdist-args "..."] [--out DIR] [--no-peer] [--device cuda]

Calibration: --calib is a JSONL file whose lines are JSON arrays of token ids (the pre-tokenised form
both tools take) or {"text": ...} objects / plain text, which are tokenised once here with the model's
tokenizer and cut into --nsamples windows of --seqlen ids in file order; without --calib the ids are
drawn at random (seed 0), which is enough for timing synthetic checkpoints. The ids are written to
OUT/calib-ids.jsonl and both tools read exactly those.

Methods (W4A16, groups of 128; each row of one method is a comparable pair):
  rtn       qdist --method rtn                            llm-compressor QuantizationModifier(W4A16)
  gptq      qdist --method gptq                           llm-compressor GPTQModifier(actorder=None)
  gptq-act  qdist --method gptq --act-order --static-groups   GPTQModifier() (its default actorder: static)
  awq       qdist --method awq (asymmetric)               AWQModifier + QuantizationModifier(W4A16_ASYM)
qdist writes compressed-tensors so that both exports load through the same evaluator. qdist runs with
its default flags (backend, math, schedule) plus --qdist-args.

Each llm-compressor run is its own Python process (this script with --peer-job), so its GPU memory
and caches do not leak into the next run. Its phases: load (from_pretrained onto the device), oneshot,
save (save_pretrained, compressed). qdist's phases come from its qdist_report.json.

Quality (--eval TEXT): perplexity of the original and of every export, all scored by one evaluator,
tests/ref/hf_ppl.py (transformers + compressed-tensors, fp32, non-overlapping windows). Only meaningful
on trained models; synthetic checkpoints are for timing.

llm-compressor and its pure-Python dependencies are not on the GPU machine: carry them as wheels
(docs/performance.md, "Peer benchmark", gives the list and the install line).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

METHODS = {
    "rtn": {"qdist": ["--method", "rtn"], "peer": "rtn"},
    "gptq": {"qdist": ["--method", "gptq"], "peer": "gptq"},
    "gptq-act": {"qdist": ["--method", "gptq", "--act-order", "--static-groups"], "peer": "gptq-act"},
    "awq": {"qdist": ["--method", "awq"], "peer": "awq"},
}


def log(msg):
    print(f"== {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# calibration ids shared by both tools

def load_ids(model, calib, nsamples, seqlen):
    if calib is None:
        cfg = json.load(open(os.path.join(model, "config.json")))
        rng = random.Random(0)
        vocab = min(int(cfg["vocab_size"]), 32000)
        return [[rng.randrange(3, vocab) for _ in range(seqlen)] for _ in range(nsamples)]
    rows, texts = [], []
    with open(calib, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if not s:
                continue
            if s[0] in "[{":
                v = json.loads(s)
                if isinstance(v, list):
                    rows.append([int(t) for t in v])
                else:
                    texts.append(v["text"])
            else:
                texts.append(line)
    if rows:
        rows = [r[:seqlen] for r in rows if len(r) >= seqlen]
        if len(rows) < nsamples:
            sys.exit(f"peer_bench: {calib}: only {len(rows)} id rows of >= {seqlen} tokens, {nsamples} needed")
        return rows[:nsamples]
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    flat = []
    for t in texts:
        flat.extend(tok.encode(t).ids)
        if len(flat) >= nsamples * seqlen:
            break
    if len(flat) < nsamples * seqlen:
        sys.exit(f"peer_bench: {calib}: {len(flat)} tokens, {nsamples} x {seqlen} needed")
    return [flat[i * seqlen:(i + 1) * seqlen] for i in range(nsamples)]


# ------------------------------------------------------------------------------------------------
# llm-compressor, one method in its own process

def peer_job(a):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    ids = [json.loads(line) for line in open(a.ids_file)]
    ds = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]})
    if a.peer_job == "rtn":
        recipe = QuantizationModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"])
    elif a.peer_job == "gptq":
        recipe = GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"], actorder=None)
    elif a.peer_job == "gptq-act":
        recipe = GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"])
    else:
        recipe = [AWQModifier(), QuantizationModifier(targets="Linear", scheme="W4A16_ASYM", ignore=["lm_head"])]
    torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype="auto", device_map=a.device)
    t1 = time.time()
    oneshot(model=model, dataset=ds, recipe=recipe, num_calibration_samples=len(ids),
            max_seq_length=len(ids[0]), shuffle_calibration_samples=False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t2 = time.time()
    model.save_pretrained(a.peer_out, save_compressed=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        src = os.path.join(a.model, f)
        if os.path.exists(src) and not os.path.exists(os.path.join(a.peer_out, f)):
            with open(src, "rb") as i, open(os.path.join(a.peer_out, f), "wb") as o:
                o.write(i.read())
    t3 = time.time()
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
    json.dump({"load_s": t1 - t0, "quantize_s": t2 - t1, "save_s": t3 - t2, "gpu_peak_bytes": peak},
              open(os.path.join(a.peer_out, "peer_timing.json"), "w"))


# ------------------------------------------------------------------------------------------------
# the driver

def run_timed(cmd, log_path, env=None):
    t0 = time.time()
    with open(log_path, "w") as lf:
        rc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env).returncode
    return rc, time.time() - t0


def qdist_run(a, method, ids_file, out):
    cmd = [a.qdist, "quantize", "--model", a.model, "--output", out, "--calib", ids_file,
           "--nsamples", str(a.nsamples), "--seqlen", str(a.seqlen), "--bits", "4", "--group-size", "128",
           "--format", "compressed-tensors", "--overwrite", "--progress", "none"]
    cmd += METHODS[method]["qdist"] + a.qdist_args.split()
    log(" ".join(cmd))
    rc, wall = run_timed(cmd, out + ".log")
    row = {"tool": "qdist", "method": method, "rc": rc, "wall_s": wall, "dir": out}
    try:
        rep = json.load(open(os.path.join(out, "qdist_report.json")))
        tot = rep.get("totals", {})
        row["quantize_s"] = sum(r.get("quantize_s", 0) for r in rep.get("ranks", []))
        row["export_s"] = tot.get("export_s", 0.0)
        row["gpu_peak_bytes"] = max((r.get("memory", {}).get("device_used_peak_bytes", 0)
                                     for r in rep.get("ranks", [])), default=0)
    except (OSError, ValueError):
        pass
    return row


def peer_run(a, method, ids_file, out):
    cmd = [sys.executable, os.path.abspath(__file__), "--peer-job", METHODS[method]["peer"], "--model", a.model,
           "--ids-file", ids_file, "--peer-out", out, "--device", a.device]
    log(f"llm-compressor {method} -> {out}")
    os.makedirs(out, exist_ok=True)
    rc, wall = run_timed(cmd, out + ".log")
    row = {"tool": "llm-compressor", "method": method, "rc": rc, "wall_s": wall, "dir": out}
    try:
        t = json.load(open(os.path.join(out, "peer_timing.json")))
        row.update({"load_s": t["load_s"], "quantize_s": t["quantize_s"], "export_s": t["save_s"],
                    "gpu_peak_bytes": t["gpu_peak_bytes"]})
    except (OSError, ValueError, KeyError):
        pass
    return row


def ppl(a, model_dir):
    cmd = [sys.executable, os.path.join(REPO, "tests", "ref", "hf_ppl.py"), "--model", model_dir, "--data", a.eval,
           "--seqlen", str(a.eval_seqlen), "--dtype", "fp32", "--device", a.device, "--json"]
    if a.eval_windows:
        cmd += ["--max-windows", str(a.eval_windows)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        log(f"eval of {model_dir} failed: {p.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])["ppl"]


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--calib", help="JSONL of id arrays, {text} lines or plain text (default: random ids)")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--methods", default="gptq,gptq-act,awq")
    ap.add_argument("--qdist", default=os.path.join(REPO, "build", "qdist"))
    ap.add_argument("--qdist-args", default="", help="extra qdist quantize flags")
    ap.add_argument("--eval", help="text file: score the original and every export (trained models only)")
    ap.add_argument("--eval-seqlen", type=int, default=1024)
    ap.add_argument("--eval-windows", type=int, default=32)
    ap.add_argument("--out", default="/tmp/peer-bench")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-peer", action="store_true", help="qdist rows only")
    ap.add_argument("--peer-job", help=argparse.SUPPRESS)
    ap.add_argument("--ids-file", help=argparse.SUPPRESS)
    ap.add_argument("--peer-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer_job:
        return peer_job(a)
    if not a.model:
        ap.error("--model is required")
    methods = [m for m in a.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            ap.error(f"--methods: unknown method {m!r}; expected some of {','.join(METHODS)}")
    os.makedirs(a.out, exist_ok=True)
    ids_file = os.path.join(a.out, "calib-ids.jsonl")
    with open(ids_file, "w") as f:
        for r in load_ids(a.model, a.calib, a.nsamples, a.seqlen):
            f.write(json.dumps(r) + "\n")
    rows = []
    for m in methods:
        rows.append(qdist_run(a, m, ids_file, os.path.join(a.out, f"qdist-{m}")))
        if not a.no_peer:
            rows.append(peer_run(a, m, ids_file, os.path.join(a.out, f"llmc-{m}")))
    base_ppl = ppl(a, a.model) if a.eval else None
    for r in rows:
        r["ppl"] = ppl(a, r["dir"]) if a.eval and r["rc"] == 0 else None
    json.dump({"rows": rows, "base_ppl": base_ppl, "args": vars(a)}, open(os.path.join(a.out, "peer.json"), "w"),
              indent=1)

    print(f"\npeer benchmark: {a.model}, {a.nsamples} x {a.seqlen} calibration ids, W4A16 g128, {time.strftime('%Y-%m-%d')}")
    if base_ppl is not None:
        print(f"original ppl (fp32, {a.eval_windows or 'all'} windows of {a.eval_seqlen}): {base_ppl:.4f}")
    print("| method | tool | rc | wall s | load s | quantize s | export/save s | GPU peak GB | ppl | peer/qdist wall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        q = next((r for r in rows if r["method"] == m and r["tool"] == "qdist"), None)
        for r in (x for x in rows if x["method"] == m):
            ratio = ""
            if r["tool"] != "qdist" and q and q["rc"] == 0 and r["rc"] == 0:
                ratio = f"{r['wall_s'] / q['wall_s']:.2f}x"
            peak = r.get("gpu_peak_bytes")
            print(f"| {m} | {r['tool']} | {r['rc']} | {r['wall_s']:.1f} | {fmt(r.get('load_s'))} | "
                  f"{fmt(r.get('quantize_s'))} | {fmt(r.get('export_s'))} | {fmt(peak / 1e9 if peak else None)} | "
                  f"{fmt(r.get('ppl'), '.4f')} | {ratio} |")
    return 1 if any(r["rc"] != 0 for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
