#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Tokenisation throughput, single-threaded: `qdist tokenize` against the `tokenizers` library.

Not a test: prints a Markdown table for docs/performance.md ("## Tokenizer throughput").
MB/s = UTF-8 bytes of document text per CPU second (user + system time, so other work on a shared
machine does not count). qdist's time is the CPU time of `qdist tokenize --input corpus.jsonl
--output /dev/null` minus the same run on an empty file (tokenizer.json loading excluded; JSON
parsing and writing ids included). The library's time is the CPU time of a Python loop of
Tokenizer.encode(text) with RAYON_NUM_THREADS=1 (no encode_batch). Best of --repeat runs.

usage: python3 bench/tokenize/bench_tokenize.py --qdist build/qdist [--repeat 3]
"""
import argparse
import datetime
import glob
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time  # noqa: F401

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import tokenizers  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "py"))
import tok_builders  # noqa: E402
import tok_corpus  # noqa: E402


def english_docs():
    path = os.path.join(tok_corpus.FIX, "wikitext-2-raw", "wiki.test.raw")
    lines = [l for l in open(path, encoding="utf-8").read().split("\n") if l.strip()]
    c4 = os.path.join(tok_corpus.FIX, "c4", "c4_validation_sample.jsonl")
    return lines + [json.loads(l)["text"] for l in open(c4, encoding="utf-8")]


def code_docs():
    stdlib = os.path.dirname(os.__file__)
    files = sorted(glob.glob(os.path.join(stdlib, "*.py")))
    files += sorted(glob.glob(os.path.join(REPO, "src", "**", "*.[ch]"), recursive=True))
    docs = [open(p, encoding="utf-8", errors="replace").read() for p in files if "unicode-tables" not in p]
    return docs


def time_qdist(qdist, tok_path, corpus, empty, repeat):
    def cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def once(inp):
        t0 = cpu()
        subprocess.run([qdist, "tokenize", "--model", tok_path, "--input", inp, "--output", os.devnull], check=True)
        return cpu() - t0
    load = min(once(empty) for _ in range(repeat))
    return min(once(corpus) for _ in range(repeat)) - load


def time_hf(tok_path, docs, repeat):
    tok = tokenizers.Tokenizer.from_file(tok_path)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for d in docs:
            tok.encode(d)
        best = min(best, time.process_time() - t0)
    return best


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qdist", default=os.path.join(REPO, "build", "qdist"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="qd-bench-tok-")
    corpora = {"English (WikiText-2 + C4)": english_docs(), "code (Python stdlib + qdist C)": code_docs()}
    toks = {}
    toks["pycode-16m (Llama-3 split, byte-level)"] = os.path.join(tok_corpus.FIX, "pycode-16m", "tokenizer.json")
    toks["stories260K-hf (SentencePiece BPE)"] = os.path.join(tok_corpus.FIX, "stories260K-hf", "tokenizer.json")
    train = english_docs()[::4] + code_docs()[::4]
    toks["trained GPT-2 split, 3k vocab"] = tok_builders.gpt2(train, os.path.join(work, "gpt2.json"))
    toks["trained Qwen2 split + NFC, 4k vocab"] = tok_builders.qwen2(train, os.path.join(work, "qwen2.json"))
    empty = os.path.join(work, "empty.jsonl")
    open(empty, "w").close()
    rows = []
    for cname, docs in corpora.items():
        path = os.path.join(work, "corpus.jsonl")
        tok_corpus.write_jsonl(docs, path)
        mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
        for tname, tpath in toks.items():
            tq = time_qdist(args.qdist, tpath, path, empty, args.repeat)
            th = time_hf(tpath, docs, args.repeat)
            rows.append((cname, f"{mb:.2f}", tname, f"{mb / tq:.1f}", f"{mb / th:.1f}", f"{th / tq:.2f}x"))
    print(f"date: {datetime.date.today()}  machine: {cpu_name()}, {os.cpu_count()} cores  "
          f"tokenizers {tokenizers.__version__}, single thread")
    print("| text | MB | tokenizer | qdist MB/s | tokenizers MB/s | qdist / tokenizers |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
