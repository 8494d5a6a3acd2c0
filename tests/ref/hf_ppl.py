#!/usr/bin/env python3
"""Reference perplexity of a Hugging Face causal LM on a text file, measured by transformers.

Protocol (the one docs/quality.md uses; qdist's own eval must match it to be comparable):
  1. Read the whole file as UTF-8 and tokenize it once with the model's HF tokenizer:
     tokenizer(text).input_ids, i.e. with the tokenizer's default special-token handling
     (for fixtures/pycode-16m that is one <|begin_of_text|> at the very start, nothing at the end).
  2. Cut the ids into non-overlapping windows of --seqlen tokens; the remainder is dropped.
     No BOS or other token is inserted per window.
  3. Each window is one forward pass; the loss is the cross-entropy of logits[t] against ids[t+1]
     (seqlen-1 predicted positions per window), summed over all windows, logits in float32.
  4. ppl = exp(total nll / number of predicted positions).

On a CPU without native bf16 matrix instructions (AVX2 only) --dtype bf16 is several times slower
than fp32; --progress N reports every N windows.

Usage: python3 tests/ref/hf_ppl.py --model fixtures/pycode-16m --data fixtures/pycode-16m/eval.txt \
           --seqlen 1024 --dtype bf16 [--json] [--max-windows N] [--device cpu] [--progress N]
"""
import argparse
import json
import math
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="HF model directory")
    ap.add_argument("--data", required=True, help="UTF-8 text file")
    ap.add_argument("--seqlen", type=int, default=1024)
    ap.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="model weights/compute dtype")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-windows", type=int, default=0, help="use only the first N windows (0: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch default)")
    ap.add_argument("--progress", type=int, default=0, help="print progress to stderr every N windows")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--ct-kv-cache", action="store_true",
                    help="apply the checkpoint's kv_cache_scheme (compressed-tensors quantizes the cached keys and "
                         "values with k_scale/v_scale) through ct_kv_shim.py")
    a = ap.parse_args(argv)

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    tok = AutoTokenizer.from_pretrained(a.model)
    if a.ct_kv_cache:
        import os
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from ct_kv_shim import ct_attention_shim
        with ct_attention_shim():
            model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype).to(a.device).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype).to(a.device).eval()

    with open(a.data, encoding="utf-8", newline="") as f:
        text = f.read()
    ids = tok(text).input_ids
    n_tokens = len(ids)
    n_win = n_tokens // a.seqlen
    if a.max_windows:
        n_win = min(n_win, a.max_windows)
    if n_win == 0:
        sys.exit(f"hf_ppl: {n_tokens} tokens, fewer than one window of {a.seqlen}")

    t0 = time.time()
    nll = 0.0
    with torch.inference_mode():
        for i in range(n_win):
            x = torch.tensor(ids[i * a.seqlen:(i + 1) * a.seqlen], device=a.device)[None]
            logits = model(input_ids=x).logits.float()
            nll += torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum").item()
            if a.progress and (i + 1) % a.progress == 0:
                print(f"hf_ppl: {i + 1}/{n_win} windows, ppl so far {math.exp(nll / ((i + 1) * (a.seqlen - 1))):.4f}, "
                      f"{time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    n_pred = n_win * (a.seqlen - 1)
    ppl = math.exp(nll / n_pred)
    res = {
        "model": a.model, "data": a.data, "dtype": a.dtype, "seqlen": a.seqlen,
        "tokens": n_tokens, "windows": n_win, "tokens_scored": n_win * a.seqlen, "predicted": n_pred,
        "bos_first": bool(tok.bos_token_id is not None and ids and ids[0] == tok.bos_token_id),
        "mean_nll": nll / n_pred, "ppl": ppl, "ct_kv_cache": a.ct_kv_cache, "seconds": round(time.time() - t0, 1),
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"ppl {ppl:.4f}  dtype {a.dtype}  seqlen {a.seqlen}  tokens {n_tokens} "
              f"({n_win} windows, {n_pred} predicted)  bos_first {res['bos_first']}")
    return res


if __name__ == "__main__":
    main()
