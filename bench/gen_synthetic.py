#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""gen_synthetic.py - synthetic Hugging Face checkpoints with real architectures' shapes and random
bf16 weights, for speed benchmarks (the numbers are noise: no quality can be measured on them).

  python3 bench/gen_synthetic.py --arch llama3-8b OUT_DIR [--blocks N] [--nsamples 128] [--seqlen 2048]

Architectures: llama3-8b (32 blocks), llama3-70b (80 blocks; --blocks 8 keeps the first 8),
qwen2.5-7b (28 blocks, q/k/v biases), mixtral-8x7b (32 blocks; MixtralForCausalLM, 8 experts of 14336,
top-2, block_sparse_moe.gate + experts.N.w1/w2/w3); deepseek-v3 (DeepseekV3ForCausalLM as the release
ships it: an FP8 source, every Linear of the blocks e4m3 with a float32 weight_scale_inv per 128 x 128
block and quantization_config {quant_method fp8, weight_block_size [128, 128]}, the router mlp.gate in
bf16 with a float32 e_score_correction_bias; hidden 7168, MLA q_lora 1536 / kv_lora 512 / 128 heads of
128 + 64 rope / v 128, YaRN rope, 256 routed experts of 2048, top-8, n_group 8, topk_group 4, one shared
expert; first_k_dense_replace 0, so that --blocks 1 is one MoE block, about 11.5 GB); tiny-llama3
(2 small blocks, for checking the pipeline). Writes OUT_DIR/config.json, model-0000i-of-0000n.safetensors
shards (<= --shard-gb each) with model.safetensors.index.json, and OUT_DIR/calib.jsonl: --nsamples
lines, each a JSON array of --seqlen random token ids (the pre-tokenised calibration form). qdist
loads a tokenizer even for ids, so --tokenizer (default: the bundled fixtures/pycode-16m one) is
copied with its vocabulary padded (--hidden / --inter shrink an architecture's widths, for smoke tests;
--experts, --heads, --q-lora, --kv-lora and --vocab too) by "<|synthetic_N|>" entries to the architecture's vocab size. Weights: N(0, 0.02) for Linear/embedding (drawn once into a pool of 64 Mi bf16
values and sliced at random offsets, which keeps generation near disk speed), 1 for norms; FP8
weights: e4m3 codes of N(0, 1) x 64 (a pool likewise) with block scales 0.02 / 64 x U(0.9, 1.1).
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
    "deepseek-v3": dict(arch="DeepseekV3ForCausalLM", model_type="deepseek_v3", hidden=7168, inter=18432, layers=61,
                        heads=128, kv=128, vocab=129280, theta=10000.0, eps=1e-6, bias=False, tie=False,
                        maxpos=163840, rope_scaling={"type": "yarn", "factor": 40, "beta_fast": 32, "beta_slow": 1,
                                                     "mscale": 1.0, "mscale_all_dim": 1.0,
                                                     "original_max_position_embeddings": 4096},
                        experts=256, topk=8, moe_inter=2048, shared=1, n_group=8, topk_group=4, q_lora=1536,
                        kv_lora=512, nope=128, rope=64, v=128, fp8=True),
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
    if a["model_type"] == "deepseek_v3":
        c.update(moe_intermediate_size=a["moe_inter"], n_routed_experts=a["experts"], n_shared_experts=a["shared"],
                 num_experts_per_tok=a["topk"], n_group=a["n_group"], topk_group=a["topk_group"],
                 routed_scaling_factor=2.5, norm_topk_prob=True, scoring_func="sigmoid", topk_method="noaux_tc",
                 first_k_dense_replace=0, moe_layer_freq=1, q_lora_rank=a["q_lora"], kv_lora_rank=a["kv_lora"],
                 qk_nope_head_dim=a["nope"], qk_rope_head_dim=a["rope"], v_head_dim=a["v"], attention_bias=False,
                 num_nextn_predict_layers=0, bos_token_id=0, eos_token_id=1,
                 quantization_config={"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                      "weight_block_size": [128, 128]})
    if a["model_type"] == "llama":
        c["attention_bias"] = False
        c["mlp_bias"] = False
        c["head_dim"] = a["hidden"] // a["heads"]
    return c


def deepseek_tensors(a, layers):
    """DeepSeek-V3 blocks: every Linear 'fp8' followed by its 'sinv' [ceil(N/128), ceil(K/128)]"""
    h, mi, nh = a["hidden"], a["moe_inter"], a["heads"]
    qk = a["nope"] + a["rope"]
    out = [("model.embed_tokens.weight", (a["vocab"], h), "w")]

    def lin(name, n, k):
        return [(name + ".weight", (n, k), "fp8"), (name + ".weight_scale_inv", (-(-n // 128), -(-k // 128)), "sinv")]
    for l in range(layers):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (h,), "one")]
        out += lin(p + "self_attn.q_a_proj", a["q_lora"], h) + [(p + "self_attn.q_a_layernorm.weight", (a["q_lora"],), "one")]
        out += lin(p + "self_attn.q_b_proj", nh * qk, a["q_lora"])
        out += lin(p + "self_attn.kv_a_proj_with_mqa", a["kv_lora"] + a["rope"], h)
        out += [(p + "self_attn.kv_a_layernorm.weight", (a["kv_lora"],), "one")]
        out += lin(p + "self_attn.kv_b_proj", nh * (a["nope"] + a["v"]), a["kv_lora"])
        out += lin(p + "self_attn.o_proj", h, nh * a["v"]) + [(p + "post_attention_layernorm.weight", (h,), "one")]
        out += [(p + "mlp.gate.weight", (a["experts"], h), "w"), (p + "mlp.gate.e_score_correction_bias", (a["experts"],), "ebias")]
        for e in range(a["experts"]):
            m = p + f"mlp.experts.{e}."
            out += lin(m + "gate_proj", mi, h) + lin(m + "up_proj", mi, h) + lin(m + "down_proj", h, mi)
        m = p + "mlp.shared_experts."
        si = mi * a["shared"]
        out += lin(m + "gate_proj", si, h) + lin(m + "up_proj", si, h) + lin(m + "down_proj", h, si)
    out += [("model.norm.weight", (h,), "one"), ("lm_head.weight", (a["vocab"], h), "w")]
    return out


# safetensors dtype and bytes per element of each kind
KINDS = {"w": ("BF16", 2), "one": ("BF16", 2), "b": ("BF16", 2), "fp8": ("F8_E4M3", 1), "sinv": ("F32", 4),
         "ebias": ("F32", 4)}


def e4m3_values():
    """the float value of each of the 256 e4m3fn codes (NaN for 0x7f / 0xff)"""
    v = np.empty(256, dtype=np.float64)
    for c in range(256):
        s, e, m = (c >> 7) & 1, (c >> 3) & 15, c & 7
        v[c] = (m / 8) * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
        if e == 15 and m == 7:
            v[c] = np.nan
        v[c] = -v[c] if s else v[c]
    return v


def e4m3_pool(rng, n):
    """n e4m3 codes of N(0, 1) x 64, each the code nearest to its value"""
    vals = e4m3_values()
    codes = np.array([c for c in range(256) if not np.isnan(vals[c])], dtype=np.uint8)
    order = np.argsort(vals[codes])
    sv, sc = vals[codes][order], codes[order]
    x = np.clip(rng.standard_normal(n, dtype=np.float32) * 64.0, -448.0, 448.0)
    j = np.clip(np.searchsorted(sv, x), 1, len(sv) - 1)
    nearer = np.where(np.abs(sv[j - 1] - x) <= np.abs(sv[j] - x), j - 1, j)
    return sc[nearer]


def tensors_of(a, layers):
    """(name, shape, kind) in HF order; kind: 'w' random, 'one' norm weight, 'b' bias."""
    if a["model_type"] == "deepseek_v3":
        return deepseek_tensors(a, layers)
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
    ap.add_argument("--experts", type=int, default=0, help="override the number of routed experts (MoE)")
    ap.add_argument("--heads", type=int, default=0, help="override the attention heads (deepseek-v3: MLA heads)")
    ap.add_argument("--q-lora", type=int, default=0, help="deepseek-v3: override q_lora_rank")
    ap.add_argument("--kv-lora", type=int, default=0, help="deepseek-v3: override kv_lora_rank")
    ap.add_argument("--vocab", type=int, default=0, help="override the vocabulary size (>= the tokenizer's)")
    ap.add_argument("--tokenizer", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                                                         "pycode-16m", "tokenizer.json"))
    args = ap.parse_args()
    a = dict(ARCHS[args.arch])
    for flag, key in [("experts", "experts"), ("heads", "heads"), ("q_lora", "q_lora"), ("kv_lora", "kv_lora"),
                      ("vocab", "vocab")]:
        if getattr(args, flag):
            if key not in a:
                ap.error(f"--{flag.replace('_', '-')}: {args.arch} has no such dimension")
            a[key] = getattr(args, flag)
            if key == "heads":
                a["kv"] = a["heads"] if a["model_type"] == "deepseek_v3" else a["kv"]
    if a["model_type"] == "deepseek_v3" and (a["experts"] % a["n_group"] or a["experts"] < 2 * a["n_group"]):
        ap.error(f"--experts {a['experts']}: n_group {a['n_group']} groups of at least 2 experts each are needed")
    if args.hidden:
        if args.hidden % a["heads"] and a["model_type"] != "deepseek_v3":
            ap.error(f"--hidden {args.hidden}: not a multiple of the {a['heads']} attention heads")
        a["hidden"] = args.hidden
    if args.inter:
        a["moe_inter" if "moe_inter" in a else "inter"] = args.inter
    layers = args.blocks if args.blocks > 0 else a["layers"]
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    pool = bf16_of(rng.standard_normal(64 << 20, dtype=np.float32) * 0.02)
    one = bf16_of(np.ones(1, dtype=np.float32))[0]
    fp8_pool = e4m3_pool(rng, 64 << 20) if a.get("fp8") else None

    specs = tensors_of(a, layers)
    # plan shards by bytes
    shards, cur, cur_bytes, limit = [], [], 0, int(args.shard_gb * (1 << 30))
    for name, shape, kind in specs:
        nb = int(np.prod(shape)) * KINDS[kind][1]
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
        for name, shape, kind in sh:
            nb = int(np.prod(shape)) * KINDS[kind][1]
            header[name] = {"dtype": KINDS[kind][0], "shape": list(shape), "data_offsets": [off, off + nb]}
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
                if kind == "sinv":  # weight = code x scale: N(0, 0.02) like the bf16 weights
                    f.write((rng.uniform(0.9, 1.1, n) * 0.02 / 64).astype(np.float32).tobytes())
                    continue
                if kind == "ebias":
                    f.write(rng.uniform(-0.01, 0.01, n).astype(np.float32).tobytes())
                    continue
                src = fp8_pool if kind == "fp8" else pool
                done = 0
                while done < n:  # random slices of the pool
                    take = min(n - done, src.size // 2)
                    o = int(rng.integers(0, src.size - take + 1))
                    f.write(src[o:o + take].tobytes())
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
    print(f"{args.arch}: {layers} blocks, {total / 1e9:.2f} GB{' (FP8 Linears)' if a.get('fp8') else ' of bf16'} in {len(shards)} shards, "
          f"{args.nsamples} x {args.seqlen} calibration ids -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
