#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""gen_synthetic.py - synthetic Hugging Face checkpoints with real architectures' shapes and random
bf16 weights, for speed benchmarks (the numbers are noise: no quality can be measured on them).

  python3 bench/gen_synthetic.py --arch llama3-8b OUT_DIR [--blocks N] [--nsamples 128] [--seqlen 2048]

Architectures: llama3-8b (32 blocks), llama3-70b (80 blocks; --blocks 8 keeps the first 8),
qwen2.5-7b (28 blocks, q/k/v biases), mixtral-8x7b (32 blocks; MixtralForCausalLM, 8 experts of 14336,
top-2, block_sparse_moe.gate + experts.N.w1/w2/w3); tiny-llama3 (2 small blocks, for checking the pipeline). Writes OUT_DIR/config.json, model-0000i-of-0000n.safetensors
shards (<= --shard-gb each) with model.safetensors.index.json, and OUT_DIR/calib.jsonl: --nsamples
lines, each a JSON array of --seqlen random token ids (the pre-tokenised calibration form). qdist
loads a tokenizer even for ids, so --tokenizer (default: the bundled fixtures/pycode-16m one) is
copied with its vocabulary padded (--hidden / --inter shrink an architecture's widths, for smoke tests) by "<|synthetic_N|>" entries to the architecture's vocab size. Weights: N(0, 0.02) for Linear/embedding (drawn once into a pool of 64 Mi bf16
values and sliced at random offsets, which keeps generation near disk speed), 1 for norms.
Only numpy is needed.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

ARCHS = {
    "llama3-8b": dict(arch="LlamaForCausalLM", model_type="llama", hidden=4096, inter=14336, layers=32, heads=32,
                      kv=8, vocab=128256, theta=500000.0, eps=1e-5, bias=False, tie=False, maxpos=8192,
                      rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
    "llama3-70b": dict(arch="LlamaForCausalLM", model_type="llama", hidden=8192, inter=28672, layers=80, heads=64,
                       kv=8, vocab=128256, theta=500000.0, eps=1e-5, bias=False, tie=False, maxpos=8192,
                       rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
    "tiny-llama3": dict(arch="LlamaForCausalLM", model_type="llama", hidden=256, inter=512, layers=2, heads=4,
                        kv=2, vocab=128256, theta=500000.0, eps=1e-5, bias=False, tie=False, maxpos=8192,
                        rope_scaling=None),
    "mixtral-8x7b": dict(arch="MixtralForCausalLM", model_type="mixtral", hidden=4096, inter=14336, layers=32,
                         heads=32, kv=8, vocab=32000, theta=1000000.0, eps=1e-5, bias=False, tie=False,
                         maxpos=32768, rope_scaling=None, experts=8, topk=2),
    "qwen2.5-7b": dict(arch="Qwen2ForCausalLM", model_type="qwen2", hidden=3584, inter=18944, layers=28, heads=28,
                       kv=4, vocab=152064, theta=1000000.0, eps=1e-6, bias=True, tie=False, maxpos=32768,
                       rope_scaling=None),
}


def config_of(a, layers):
    c = {
        "architectures": [a["arch"]], "model_type": a["model_type"], "hidden_size": a["hidden"],
        "intermediate_size": a["inter"], "num_hidden_layers": layers, "num_attention_heads": a["heads"],
        "num_key_value_heads": a["kv"], "vocab_size": a["vocab"], "rope_theta": a["theta"],
        "rms_norm_eps": a["eps"], "tie_word_embeddings": a["tie"], "max_position_embeddings": a["maxpos"],
        "hidden_act": "silu", "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
    }
    if a["rope_scaling"]:
        c["rope_scaling"] = a["rope_scaling"]
    if a["model_type"] == "qwen2":
        c["use_sliding_window"] = False
        c["sliding_window"] = None
        c["max_window_layers"] = layers
    if a["model_type"] == "mixtral":
        c.update(num_local_experts=a["experts"], num_experts_per_tok=a["topk"], sliding_window=None,
                 router_aux_loss_coef=0.02, output_router_logits=False, head_dim=a["hidden"] // a["heads"])
    if a["model_type"] == "llama":
        c["attention_bias"] = False
        c["mlp_bias"] = False
        c["head_dim"] = a["hidden"] // a["heads"]
    return c


def tensors_of(a, layers):
    """(name, shape, kind) in HF order; kind: 'w' random, 'one' norm weight, 'b' bias."""
    h, i, hd = a["hidden"], a["inter"], a["hidden"] // a["heads"]
    q, kv = a["heads"] * hd, a["kv"] * hd
    out = [("model.embed_tokens.weight", (a["vocab"], h), "w")]
    for l in range(layers):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (h,), "one"),
                (p + "self_attn.q_proj.weight", (q, h), "w"), (p + "self_attn.k_proj.weight", (kv, h), "w"),
                (p + "self_attn.v_proj.weight", (kv, h), "w")]
        if a["bias"]:
            out += [(p + "self_attn.q_proj.bias", (q,), "b"), (p + "self_attn.k_proj.bias", (kv,), "b"),
                    (p + "self_attn.v_proj.bias", (kv,), "b")]
        out += [(p + "self_attn.o_proj.weight", (h, q), "w"), (p + "post_attention_layernorm.weight", (h,), "one")]
        if a.get("experts"):
            m = p + "block_sparse_moe."
            out += [(m + "gate.weight", (a["experts"], h), "w")]
            for e in range(a["experts"]):
                out += [(m + f"experts.{e}.w1.weight", (i, h), "w"), (m + f"experts.{e}.w2.weight", (h, i), "w"),
                        (m + f"experts.{e}.w3.weight", (i, h), "w")]
        else:
            out += [(p + "mlp.gate_proj.weight", (i, h), "w"), (p + "mlp.up_proj.weight", (i, h), "w"),
                    (p + "mlp.down_proj.weight", (h, i), "w")]
    out += [("model.norm.weight", (h,), "one")]
    if not a["tie"]:
        out += [("lm_head.weight", (a["vocab"], h), "w")]
    return out


def bf16_of(x):
    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("out")
    ap.add_argument("--arch", required=True, choices=sorted(ARCHS))
    ap.add_argument("--blocks", type=int, default=0, help="keep the first N blocks (0: all)")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--shard-gb", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=0, help="override the hidden size (0: the architecture's)")
    ap.add_argument("--inter", type=int, default=0, help="override the (expert) intermediate size")
    ap.add_argument("--tokenizer", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                                                         "pycode-16m", "tokenizer.json"))
    args = ap.parse_args()
    a = dict(ARCHS[args.arch])
    if args.hidden:
        if args.hidden % a["heads"]:
            ap.error(f"--hidden {args.hidden}: not a multiple of the {a['heads']} attention heads")
        a["hidden"] = args.hidden
    if args.inter:
        a["inter"] = args.inter
    layers = args.blocks if args.blocks > 0 else a["layers"]
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    pool = bf16_of(rng.standard_normal(64 << 20, dtype=np.float32) * 0.02)
    one = bf16_of(np.ones(1, dtype=np.float32))[0]

    specs = tensors_of(a, layers)
    # plan shards by bytes
    shards, cur, cur_bytes, limit = [], [], 0, int(args.shard_gb * (1 << 30))
    for name, shape, kind in specs:
        nb = int(np.prod(shape)) * 2
        if cur and cur_bytes + nb > limit:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shape, kind))
        cur_bytes += nb
    shards.append(cur)
    weight_map, total = {}, 0
    for si, sh in enumerate(shards):
        fname = f"model-{si + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, _ in sh:
            nb = int(np.prod(shape)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + nb]}
            off += nb
            weight_map[name] = fname
        hj = json.dumps(header, separators=(",", ":")).encode()
        hj += b" " * ((8 - len(hj) % 8) % 8)
        with open(os.path.join(args.out, fname), "wb") as f:
            f.write(struct.pack("<Q", len(hj)))
            f.write(hj)
            for name, shape, kind in sh:
                n = int(np.prod(shape))
                if kind == "one":
                    f.write(np.full(n, one, dtype=np.uint16).tobytes())
                    continue
                done = 0
                while done < n:  # random slices of the pool
                    take = min(n - done, pool.size // 2)
                    o = int(rng.integers(0, pool.size - take + 1))
                    f.write(pool[o:o + take].tobytes())
                    done += take
        total += off
        print(f"wrote {fname} ({off / 1e9:.2f} GB)", file=sys.stderr, flush=True)
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config_of(a, layers), f, indent=1)
    if os.path.exists(args.tokenizer):
        tok = json.load(open(args.tokenizer))
        vocab = tok["model"]["vocab"]
        nxt = max(list(vocab.values()) + [t["id"] for t in tok.get("added_tokens", [])]) + 1
        for i in range(nxt, a["vocab"]):
            vocab[f"<|synthetic_{i}|>"] = i
        with open(os.path.join(args.out, "tokenizer.json"), "w") as f:
            json.dump(tok, f)
        cfg = os.path.join(os.path.dirname(args.tokenizer), "tokenizer_config.json")
        if os.path.exists(cfg):
            with open(cfg) as fi, open(os.path.join(args.out, "tokenizer_config.json"), "w") as fo:
                fo.write(fi.read())
    else:
        print(f"no tokenizer at {args.tokenizer}: none written", file=sys.stderr)
    with open(os.path.join(args.out, "calib.jsonl"), "w") as f:
        ids = rng.integers(3, a["vocab"], size=(args.nsamples, args.seqlen))
        for row in ids:
            f.write("[" + ",".join(map(str, row.tolist())) + "]\n")
    print(f"{args.arch}: {layers} blocks, {total / 1e9:.2f} GB of bf16 in {len(shards)} shards, "
          f"{args.nsamples} x {args.seqlen} calibration ids -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
