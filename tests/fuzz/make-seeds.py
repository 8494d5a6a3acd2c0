#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Regenerate the seed corpora corpus-safetensors/ and corpus-config/ (small valid inputs plus one
crafted bad input per validation rule). Run from anywhere; needs numpy and safetensors."""
import json
import os
import struct

import numpy as np
from safetensors.numpy import save

HERE = os.path.dirname(os.path.abspath(__file__))


def raw(header, data=b"", n=None):
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if n is None else n) + h + data


def tensor(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


def st_seeds():
    seeds = {
        "valid-numpy": save({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.int8)},
                            metadata={"format": "pt"}),
        "valid-empty": raw("{}"),
        "valid-scalar-zero": raw(json.dumps({"s": tensor("U8", [], 0, 1), "z": tensor("F32", [0, 4], 1, 1),
                                             "f4": tensor("F4", [4], 1, 3)}) + "   ", b"\x01\x02\x03"),
        "truncated": raw(json.dumps({"w": tensor("F32", [2], 0, 8)}), b"\x00" * 5),
        "header-past-end": raw(json.dumps({"w": tensor("F32", [2], 0, 8)}), b"\x00" * 8, n=4096),
        "header-huge": raw(json.dumps({"w": tensor("F32", [2], 0, 8)}), b"\x00" * 8, n=100000001),
        "no-brace": raw(" " + json.dumps({"w": tensor("F32", [2], 0, 8)}), b"\x00" * 8),
        "overlap": raw(json.dumps({"a": tensor("F32", [1], 0, 4), "b": tensor("F32", [1], 2, 6)}), b"\x00" * 6),
        "gap": raw(json.dumps({"a": tensor("U8", [2], 0, 2), "b": tensor("U8", [2], 4, 6)}), b"\x00" * 6),
        "unknown-dtype": raw(json.dumps({"w": tensor("F12", [2], 0, 8)}), b"\x00" * 8),
        "size-mismatch": raw(json.dumps({"w": tensor("F32", [3], 0, 8)}), b"\x00" * 8),
        "duplicate": raw('{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
                         '"w":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}', b"\x00" * 8),
        "trailing": raw(json.dumps({"w": tensor("U8", [4], 0, 4)}), b"\x00" * 8),
        "bad-metadata": raw('{"__metadata__":{"format":1}}'),
        "tiny": b"abc",
        "nul-in-name": raw(b'{"w\x00x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x00"),
    }
    return seeds


CFG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 172,
       "num_hidden_layers": 5, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 8, "vocab_size": 512,
       "max_position_embeddings": 512, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "rope_scaling": None,
       "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}


def cfg_seeds():
    def v(**kw):
        c = dict(CFG)
        c.update(kw)
        return json.dumps(c).encode()
    return {
        "llama": v(),
        "llama3-rope": v(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        "rope-parameters": v(rope_parameters={"rope_type": "linear", "rope_theta": 1e6, "factor": 2.0}, dtype="bfloat16"),
        "mistral": v(architectures=["MistralForCausalLM"], sliding_window=4096),
        "qwen2": v(architectures=["Qwen2ForCausalLM"], use_sliding_window=True, sliding_window=128),
        "qwen3-quant": v(architectures=["Qwen3ForCausalLM"], quantization_config={"quant_method": "gptq", "bits": 4}),
        "moe": v(architectures=["MixtralForCausalLM"], num_local_experts=8),
        "unknown": v(architectures=["GPT2LMHeadModel"]),
        "missing-field": json.dumps({k: x for k, x in CFG.items() if k != "hidden_size"}).encode(),
        "not-json": b"{\"architectures\": [",
    }


for name, seeds in (("safetensors", st_seeds()), ("config", cfg_seeds())):
    d = os.path.join(HERE, f"corpus-{name}")
    os.makedirs(d, exist_ok=True)
    for k, data in seeds.items():
        with open(os.path.join(d, k), "wb") as f:
            f.write(data)
    os.makedirs(os.path.join(HERE, "regressions", name), exist_ok=True)
