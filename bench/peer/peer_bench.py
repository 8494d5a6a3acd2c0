#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""peer_bench.py - qdist against llm-compressor on the same checkpoint and the same calibration ids,
in one run on one machine, printed as one table.

  python3 bench/peer/peer_bench.py --model DIR [--calib FILE] [--nsamples 128] [--seqlen 2048]
        [--methods gptq,gptq-act,awq|issue20] [--eval TEXT --eval-seqlen 1024 --eval-windows 32]
        [--qdist build/qdist] [--qdist-args "..."] [--out DIR] [--no-peer] [--device cuda]
        [--peer-python PY] [--eval-python PY]

Calibration: --calib is a JSONL file whose lines are JSON arrays of token ids (the pre-tokenised form
both tools take) or {"text": ...} objects / plain text, which are tokenised once here with the model's
tokenizer and cut into --nsamples windows of --seqlen ids in file order; without --calib the ids are
drawn at random (seed 0), which is enough for timing synthetic checkpoints. The ids are written to
OUT/calib-ids.jsonl and both tools read exactly those.

Methods (each row of one method is a comparable pair; --methods takes names or the groups w4a16 and issue20):
  W4A16, groups of 128:
  rtn       qdist --method rtn                            llm-compressor QuantizationModifier(W4A16)
  gptq      qdist --method gptq                           llm-compressor GPTQModifier(actorder=None)
  gptq-act  qdist --method gptq --act-order --static-groups   GPTQModifier() (its default actorder: static)
  awq       qdist --method awq (asymmetric)               AWQModifier + QuantizationModifier(W4A16_ASYM)
  issue 20 (qdist --scheme S; the llm-compressor preset of the same fields; lm_head left alone by both):
  fp8-dynamic[-gptq]    --scheme fp8-dynamic, rtn [gptq]  QuantizationModifier [GPTQModifier] FP8_DYNAMIC
  fp8-block             --scheme fp8-block                QuantizationModifier FP8_BLOCK
  w8a8-int8[-gptq]      --scheme w8a8-int8, rtn [gptq]    QuantizationModifier [GPTQModifier] W8A8
  w8a8-int8-sq[-gptq]   the same with --smoothquant 0.5   SmoothQuantModifier(smoothing_strength=0.5) first
  fp8-static            --scheme fp8-static               QuantizationModifier FP8 (static per-tensor input scales)
  fp8-kv                --scheme fp8-dynamic --kv-cache fp8   FP8_DYNAMIC + kv_cache_scheme fp8 per tensor
  nvfp4a16[-gptq]       --scheme nvfp4a16, rtn [gptq]     QuantizationModifier [GPTQModifier] NVFP4A16
  nvfp4                 --scheme nvfp4 (calibrated)       QuantizationModifier NVFP4
  mxfp4a16[-gptq]       --scheme mxfp4, rtn [gptq]        QuantizationModifier [GPTQModifier] MXFP4A16
  mxfp4                 --scheme mxfp4-w4a4               QuantizationModifier MXFP4
  GPTQ pairs run without act-order on both sides. qdist gets the calibration ids only where it uses them.
qdist writes compressed-tensors so that both exports load through the same evaluator. qdist runs with
its default flags (backend, math, schedule) plus --qdist-args.

Each llm-compressor run is its own Python process (this script with --peer-job), so its GPU memory
and caches do not leak into the next run. Its phases: load (from_pretrained onto the device), oneshot,
save (save_pretrained, compressed). qdist's phases come from its qdist_report.json.

Quality (--eval TEXT): perplexity of the original and of every export, all scored by one evaluator,
tests/ref/hf_ppl.py (transformers + compressed-tensors, fp32, non-overlapping windows; its forward
quantizes activations as each checkpoint declares, so W8A8/W4A4 rows are the activation-quantized
figure; the FP4 rows in bf16, which compressed-tensors' fp4 path needs, beside the original in bf16; fp8-kv with --ct-kv-cache). Each pair is scored as soon as it is written. Only
meaningful on trained models; synthetic checkpoints are for timing.

--peer-python / --eval-python: llm-compressor pins a compressed-tensors version; run it from its own
environment and the evaluator from another (e.g. the project's venv with a newer compressed-tensors).

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

W4 = ["--bits", "4", "--group-size", "128"]
CAL = {"calib": True}     # qdist needs the calibration ids (GPTQ, AWQ, static scales, SmoothQuant, KV scales)

# name: qdist's flags, whether qdist takes the calibration ids, the evaluator's dtype, whether the evaluator
# quantizes the KV cache (--ct-kv-cache). The llm-compressor recipe of each name is in peer_recipe().
METHODS = {
    # W4A16, groups of 128 (issue 17)
    "rtn": {"qdist": ["--method", "rtn"] + W4, **CAL},
    "gptq": {"qdist": ["--method", "gptq"] + W4, **CAL},
    "gptq-act": {"qdist": ["--method", "gptq", "--act-order", "--static-groups"] + W4, **CAL},
    "awq": {"qdist": ["--method", "awq"] + W4, **CAL},
    # the issue-20 schemes; each is compressed-tensors' preset of the same name field by field
    "fp8-dynamic": {"qdist": ["--scheme", "fp8-dynamic", "--method", "rtn"]},
    "fp8-dynamic-gptq": {"qdist": ["--scheme", "fp8-dynamic", "--method", "gptq"], **CAL},
    "fp8-block": {"qdist": ["--scheme", "fp8-block", "--method", "rtn"]},
    "w8a8-int8": {"qdist": ["--scheme", "w8a8-int8", "--method", "rtn"]},
    "w8a8-int8-gptq": {"qdist": ["--scheme", "w8a8-int8", "--method", "gptq"], **CAL},
    "w8a8-int8-sq": {"qdist": ["--scheme", "w8a8-int8", "--method", "rtn", "--smoothquant", "0.5"], **CAL},
    "w8a8-int8-sq-gptq": {"qdist": ["--scheme", "w8a8-int8", "--method", "gptq", "--smoothquant", "0.5"], **CAL},
    "fp8-static": {"qdist": ["--scheme", "fp8-static", "--method", "rtn"], **CAL},
    "fp8-kv": {"qdist": ["--scheme", "fp8-dynamic", "--method", "rtn", "--kv-cache", "fp8"], **CAL, "kv": True},
    # compressed-tensors' fp4 forward (weights and activations) computes in bf16: with fp32 it stops on a
    # float/bfloat16 matmul mismatch, so the FP4 rows are scored in bf16, beside the original in bf16
    "nvfp4a16": {"qdist": ["--scheme", "nvfp4a16", "--method", "rtn"], "eval_dtype": "bf16"},
    "nvfp4a16-gptq": {"qdist": ["--scheme", "nvfp4a16", "--method", "gptq"], **CAL, "eval_dtype": "bf16"},
    "nvfp4": {"qdist": ["--scheme", "nvfp4", "--method", "rtn"], **CAL, "eval_dtype": "bf16"},
    "mxfp4a16": {"qdist": ["--scheme", "mxfp4", "--method", "rtn"], "eval_dtype": "bf16"},
    "mxfp4a16-gptq": {"qdist": ["--scheme", "mxfp4", "--method", "gptq"], **CAL, "eval_dtype": "bf16"},
    "mxfp4": {"qdist": ["--scheme", "mxfp4-w4a4", "--method", "rtn"], "eval_dtype": "bf16"},
}
# the issue-20 pairs, in the order of docs/quality.md's table (PEER_METHODS=issue20 in bench/run_bench.sh)
ISSUE20 = ["fp8-dynamic", "fp8-dynamic-gptq", "fp8-block", "w8a8-int8", "w8a8-int8-gptq", "w8a8-int8-sq",
           "w8a8-int8-sq-gptq", "fp8-static", "fp8-kv", "nvfp4a16", "nvfp4a16-gptq", "nvfp4", "mxfp4a16",
           "mxfp4a16-gptq", "mxfp4"]
GROUPS = {"w4a16": ["rtn", "gptq", "gptq-act", "awq"], "issue20": ISSUE20}


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

def peer_recipe(name):
    """llm-compressor's recipe for a METHODS name: its presets (compressed-tensors' PRESET_SCHEMES), lm_head left
    alone as qdist leaves it; GPTQ without act-order (qdist's --method gptq), SmoothQuant with its default
    mappings (input_layernorm -> q/k/v, post_attention_layernorm -> gate/up: qdist's)."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    ign = ["lm_head"]
    rtn = {"fp8-dynamic": "FP8_DYNAMIC", "fp8-block": "FP8_BLOCK", "w8a8-int8": "W8A8", "fp8-static": "FP8",
           "nvfp4a16": "NVFP4A16", "nvfp4": "NVFP4", "mxfp4a16": "MXFP4A16", "mxfp4": "MXFP4"}
    gptq = {"fp8-dynamic-gptq": "FP8_DYNAMIC", "w8a8-int8-gptq": "W8A8", "nvfp4a16-gptq": "NVFP4A16",
            "mxfp4a16-gptq": "MXFP4A16"}
    if name == "rtn":
        return QuantizationModifier(targets="Linear", scheme="W4A16", ignore=ign)
    if name == "gptq":
        return GPTQModifier(targets="Linear", scheme="W4A16", ignore=ign, actorder=None)
    if name == "gptq-act":
        return GPTQModifier(targets="Linear", scheme="W4A16", ignore=ign)
    if name == "awq":
        from llmcompressor.modifiers.transform.awq import AWQModifier
        return [AWQModifier(), QuantizationModifier(targets="Linear", scheme="W4A16_ASYM", ignore=ign)]
    if name in rtn:
        return QuantizationModifier(targets="Linear", scheme=rtn[name], ignore=ign)
    if name in gptq:
        return GPTQModifier(targets="Linear", scheme=gptq[name], ignore=ign, actorder=None)
    if name in ("w8a8-int8-sq", "w8a8-int8-sq-gptq"):
        try:
            from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier
        except ImportError:
            from llmcompressor.modifiers.smoothquant import SmoothQuantModifier
        q = (GPTQModifier(targets="Linear", scheme="W8A8", ignore=ign, actorder=None) if name.endswith("gptq")
             else QuantizationModifier(targets="Linear", scheme="W8A8", ignore=ign))
        return [SmoothQuantModifier(smoothing_strength=0.5), q]
    if name == "fp8-kv":
        # per-tensor fp8 k/v scales, static (amax / 448 over the calibration tokens), what --kv-cache fp8 writes
        kv = {"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": False, "symmetric": True}
        return QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=ign, kv_cache_scheme=kv)
    raise SystemExit(f"peer_bench: no llm-compressor recipe for {name!r}")


def peer_job(a):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from llmcompressor import oneshot

    ids = [json.loads(line) for line in open(a.ids_file)]
    ds = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]})
    recipe = peer_recipe(a.peer_job)
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
    cmd = [a.qdist, "quantize", "--model", a.model, "--output", out, "--format", "compressed-tensors",
           "--overwrite", "--progress", "none"]
    if METHODS[method].get("calib"):
        cmd += ["--calib", ids_file, "--nsamples", str(a.nsamples), "--seqlen", str(a.seqlen)]
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
    cmd = [a.peer_python, os.path.abspath(__file__), "--peer-job", method, "--model", a.model,
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


def ppl(a, model_dir, dtype="fp32", kv=False):
    cmd = [a.eval_python, os.path.join(REPO, "tests", "ref", "hf_ppl.py"), "--model", model_dir, "--data", a.eval,
           "--seqlen", str(a.eval_seqlen), "--dtype", dtype, "--device", a.device, "--json"]
    if kv:
        cmd.append("--ct-kv-cache")
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
    ap.add_argument("--methods", default="gptq,gptq-act,awq",
                    help=f"comma list of {','.join(METHODS)} or the groups {','.join(GROUPS)}")
    ap.add_argument("--qdist", default=os.path.join(REPO, "build", "qdist"))
    ap.add_argument("--qdist-args", default="", help="extra qdist quantize flags")
    ap.add_argument("--eval", help="text file: score the original and every export (trained models only)")
    ap.add_argument("--eval-seqlen", type=int, default=1024)
    ap.add_argument("--eval-windows", type=int, default=32)
    ap.add_argument("--base-from", help="a peer.json of an earlier run with the same model and evaluation: take the "
                                        "original's ppl from it instead of scoring the original again")
    ap.add_argument("--out", default="/tmp/peer-bench")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-peer", action="store_true", help="qdist rows only")
    ap.add_argument("--peer-python", default=sys.executable,
                    help="the Python that runs llm-compressor (its own venv: it pins compressed-tensors)")
    ap.add_argument("--eval-python", default=sys.executable, help="the Python that runs tests/ref/hf_ppl.py")
    ap.add_argument("--peer-job", help=argparse.SUPPRESS)
    ap.add_argument("--ids-file", help=argparse.SUPPRESS)
    ap.add_argument("--peer-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer_job:
        return peer_job(a)
    if not a.model:
        ap.error("--model is required")
    methods = []
    for m in (m for m in a.methods.split(",") if m):
        methods += [x for x in GROUPS.get(m, [m]) if x not in methods]
    for m in methods:
        if m not in METHODS:
            ap.error(f"--methods: unknown method {m!r}; expected some of {','.join(METHODS)} "
                     f"or a group ({','.join(GROUPS)})")
    os.makedirs(a.out, exist_ok=True)
    ids_file = os.path.join(a.out, "calib-ids.jsonl")
    with open(ids_file, "w") as f:
        for r in load_ids(a.model, a.calib, a.nsamples, a.seqlen):
            f.write(json.dumps(r) + "\n")
    dtypes = sorted({METHODS[m].get("eval_dtype", "fp32") for m in methods}, reverse=True)
    known = json.load(open(a.base_from)).get("base_ppl_by_dtype", {}) if a.base_from else {}
    base = {d: known.get(d) or ppl(a, a.model, d) for d in dtypes} if a.eval else {}
    base_ppl = base.get("fp32")
    rows = []
    for m in methods:
        pair = [qdist_run(a, m, ids_file, os.path.join(a.out, f"qdist-{m}"))]
        if not a.no_peer:
            pair.append(peer_run(a, m, ids_file, os.path.join(a.out, f"llmc-{m}")))
        for r in pair:   # scored as soon as written, so that a run cut short keeps what it finished
            r["eval_dtype"] = METHODS[m].get("eval_dtype", "fp32")
            r["eval_kv"] = bool(METHODS[m].get("kv"))
            r["ppl"] = ppl(a, r["dir"], r["eval_dtype"], r["eval_kv"]) if a.eval and r["rc"] == 0 else None
            log(f"{r['tool']} {m}: rc {r['rc']}, wall {r['wall_s']:.1f} s, ppl {r['ppl']}")
        rows += pair
        json.dump({"rows": rows, "base_ppl": base_ppl, "base_ppl_by_dtype": base, "args": vars(a)},
                  open(os.path.join(a.out, "peer.json"), "w"), indent=1)

    print(f"\npeer benchmark: {a.model}, {a.nsamples} x {a.seqlen} calibration ids, {time.strftime('%Y-%m-%d')}")
    for d, v in base.items():
        if v is not None:
            print(f"original ppl ({d}, {a.eval_windows or 'all'} windows of {a.eval_seqlen}): {v:.4f}")
    print("| method | tool | rc | wall s | load s | quantize s | export/save s | GPU peak GB | ppl (eval dtype) | peer/qdist wall |")
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
                  f"{fmt(r.get('ppl'), '.4f')} ({r.get('eval_dtype', 'fp32')}{' +kv' if r.get('eval_kv') else ''}) | {ratio} |")
    return 1 if any(r["rc"] != 0 for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
