# SPDX-License-Identifier: MIT
"""FP8 source checkpoints (quant_method "fp8" or compressed-tensors FP8, issue 19): dequantized on load.

A tiny Llama is built with transformers; its block Linears are quantized here, independently of qdist,
to torch.float8_e4m3fn with one scale per 128 x 128 block (scale_inv = amax / 448, as DeepSeek-V3 and
transformers' finegrained_fp8 store it), or per row / per tensor (`weight_scale`, vLLM's fp8), and as
llm-compressor writes them (compressed-tensors float-quantized, channel and block strategies). Every
finite e4m3 code is planted in one weight, so the decode of all of them is checked against torch's.
qdist's fp32 logits must equal transformers' logits of the Python-dequantized model (rel err <= 1e-5);
`qdist quantize` (RTN and GPTQ) must run on the FP8 source end to end, and bad scales must fail with
one line naming the tensor."""
import json

import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.numpy import load_file
from safetensors.torch import save_file

import qdtest as qt
from qdtest import WIKI as TEXT
from qdtest import qdist

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FP8_MAX = 448.0
KEPT_BF16 = "model.layers.1.self_attn.o_proj.weight"


def quantize_block(w, bn, bk):
    """e4m3 codes and scale_inv [ceil(N/bn), ceil(K/bk)] with scale_inv = amax / 448 per block"""
    N, K = w.shape
    R, C = -(-N // bn), -(-K // bk)
    s = torch.ones(R, C, dtype=torch.float32)
    q = torch.empty(N, K, dtype=torch.float8_e4m3fn)
    for r in range(R):
        for c in range(C):
            blk = w[r * bn:(r + 1) * bn, c * bk:(c + 1) * bk]
            amax = blk.abs().max().item()
            s[r, c] = amax / FP8_MAX if amax > 0 else 1.0
            q[r * bn:(r + 1) * bn, c * bk:(c + 1) * bk] = (blk / s[r, c]).clamp(-FP8_MAX, FP8_MAX).to(
                torch.float8_e4m3fn)
    return q, s


def dequant_block(q, s, bn, bk):
    w = q.to(torch.float32)
    big = s.repeat_interleave(bn, 0).repeat_interleave(bk, 1)[:w.shape[0], :w.shape[1]]
    return w * big


def plant_all_codes(q):
    """the 254 finite e4m3 codes as the first elements of q"""
    codes = [c for c in range(256) if c not in (0x7F, 0xFF)]
    flat = q.view(torch.uint8).reshape(-1)
    flat[:len(codes)] = torch.tensor(codes, dtype=torch.uint8)


def build(tmp, variant="block"):
    """a tiny FP8 Llama in tmp/src and its Python-dequantized fp32 twin in transformers"""
    cfg = transformers.LlamaConfig(hidden_size=256, intermediate_size=320, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=512,
                                   max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                   bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out, ref = {}, {}
    for name, w in sd.items():
        mod = name.rsplit(".", 2)[-2] if name.endswith(".weight") else ""
        # one Linear kept in bf16, as modules_to_not_convert leaves some in real FP8 releases
        if mod not in LINEARS or name == KEPT_BF16:
            out[name] = w.to(torch.bfloat16)            # as DeepSeek-V3 ships norms and embeddings
            ref[name] = out[name].to(torch.float32)
            continue
        w = w * 4  # weights of a trained size, so the codes spread over the e4m3 range
        prefix = name[:-len(".weight")]
        if variant == "block-ue8m0":  # scale_fmt "ue8m0": power-of-two scales stored as F8_E8M0
            s = torch.pow(2.0, torch.ceil(torch.log2(quantize_block(w, 128, 128)[1])))
            big = s.repeat_interleave(128, 0).repeat_interleave(128, 1)[:w.shape[0], :w.shape[1]]
            q = (w / big).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
            out[name], out[prefix + ".weight_scale_inv"] = q, s.to(torch.float8_e8m0fnu)
            ref[name] = dequant_block(q, s, 128, 128)
        elif variant == "block":
            q, s = quantize_block(w, 128, 128)
            if name == "model.layers.0.self_attn.q_proj.weight":
                plant_all_codes(q)
            out[name], out[prefix + ".weight_scale_inv"] = q, s
            ref[name] = dequant_block(q, s, 128, 128)
        elif variant == "ct-block":  # compressed-tensors "block" strategy: the block scale is .weight_scale
            q, s = quantize_block(w, 128, 128)
            out[name], out[prefix + ".weight_scale"] = q, s
            ref[name] = dequant_block(q, s, 128, 128)
        elif variant == "row-1d":  # one scale per row as a 1-D [N] tensor
            s = (w.abs().amax(1) / FP8_MAX).to(torch.float32)
            q = (w / s[:, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
            out[name], out[prefix + ".weight_scale"] = q, s
            ref[name] = q.to(torch.float32) * s[:, None]
        elif variant in ("row", "ct-channel"):
            s = (w.abs().amax(1, keepdim=True) / FP8_MAX).to(torch.float32)
            q = (w / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
            out[name], out[prefix + ".weight_scale"] = q, s
            ref[name] = q.to(torch.float32) * s
        else:  # one scale per tensor
            s = (w.abs().max() / FP8_MAX).to(torch.float32).reshape(1)
            q = (w / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
            out[name], out[prefix + ".weight_scale"] = q, s
            ref[name] = q.to(torch.float32) * s
    src = tmp / "src"
    src.mkdir()
    save_file(out, str(src / "model.safetensors"))
    d = cfg.to_dict()
    d["torch_dtype"] = "bfloat16"
    d.pop("dtype", None)
    qc = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic"}
    if variant.startswith("block"):
        qc["weight_block_size"] = [128, 128]
    if variant == "block-ue8m0":
        qc["scale_fmt"] = "ue8m0"
    if variant.startswith("ct-"):  # llm-compressor's FP8 schemes (FP8_DYNAMIC, FP8_BLOCK)
        wq = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": False,
              "strategy": "block" if variant == "ct-block" else "channel"}
        if variant == "ct-block":
            wq["block_structure"] = [128, 128]
        qc = {"quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
              "ignore": ["lm_head"], "config_groups": {"group_0": {"targets": ["Linear"], "weights": wq,
                                                                   "input_activations": {"num_bits": 8, "type": "float",
                                                                                         "strategy": "token",
                                                                                         "dynamic": True}}}}
    d["quantization_config"] = qc
    (src / "config.json").write_text(json.dumps(d, indent=2))
    qt.copy_tokenizer(src)
    model.load_state_dict(ref)
    return src, model


def tensor_names(d):
    names = set()
    for f in d.glob("*.safetensors"):
        with safe_open(str(f), "pt") as h:
            names |= set(h.keys())
    return names


def qdist_logits(model_dir, tmp):
    dump = tmp / f"dump-{model_dir.name}"
    qdist("eval", "--model", model_dir, "--data", TEXT, "--seqlen", "128", "--max-windows", "1", "--dump-logits", dump,
          timeout=300)
    d = load_file(str(dump / "logits.safetensors"))
    return d["ids"].astype(np.int64), d["logits"].astype(np.float64)


@pytest.mark.parametrize("variant", ["block", "block-ue8m0", "row", "row-1d", "tensor", "ct-channel", "ct-block"])
def test_fp8_logits_match_dequantized_transformers(variant, tmp_path):
    src, model = build(tmp_path, variant)
    ids, ours = qdist_logits(src, tmp_path)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids)[None]).logits[0, :-1].double().numpy()
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    print(f"fp8 {variant}: rel err {rel:.2e}")
    assert rel <= 1e-5


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@pytest.mark.parametrize("variant", ["block", "block-ue8m0"])
def test_backend_dequant_gives_the_python_dequantized_bits(variant, backend, tmp_path):
    """a quant_method "fp8" source's block Linears are dequantized by the backend at the load (its e4m3 bytes
    go to the device, qd_be_fp8_dequant): the logits must equal, bit for bit, those of the same backend on an
    fp32 twin holding torch's dequantization (q.to(float32) * scale, one fp32 multiply), every finite code
    and the ragged 320-wide blocks included. The CUDA half needs a GPU."""
    src, model = build(tmp_path, variant)
    twin = tmp_path / "twin"
    qt.save_tiny(model, twin)  # fp32: the dequantized Linears, and the bf16 tensors' exact fp32 values
    cfg = json.loads((twin / "config.json").read_text())
    cfg["torch_dtype"] = "bfloat16"  # as the source says, so that nothing else differs between the two runs
    cfg.pop("dtype", None)
    (twin / "config.json").write_text(json.dumps(cfg))
    logits = {}
    for d in (src, twin):
        dump = tmp_path / f"dump-{d.name}"
        r = qdist("eval", "--model", d, "--data", TEXT, "--seqlen", "128", "--max-windows", "1", "--backend", backend,
                  "--numerics", "exact", "--dump-logits", dump, ok=False, timeout=300)
        if backend == "cuda" and r.returncode != 0 and "no CUDA device" in r.stderr:
            pytest.skip("no GPU: " + r.stderr.strip().splitlines()[-1])
        assert r.returncode == 0, r.stderr
        logits[d.name] = load_file(str(dump / "logits.safetensors"))["logits"]
    a, b = logits["src"], logits["twin"]
    print(f"{variant} {backend}: {np.count_nonzero(a.view(np.uint32) != b.view(np.uint32))} of {a.size} logits differ")
    assert a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("variant", ["block", "ct-block"])
def test_inspect_names_fp8_source(variant, tmp_path):
    src, _ = build(tmp_path, variant)
    r = qdist("inspect", src, timeout=60)
    assert "FP8 (e4m3, scale per 128x128 block), dequantized on load" in r.stdout
    r = qdist("inspect", src, "--json", timeout=60)
    assert json.loads(r.stdout)["config"]["fp8_source_block"] == [128, 128]
    r = qdist("inspect", src, "--vllm-tp", "2", ok=False, timeout=60)
    if variant == "block":
        # quant_method "fp8": the 13 FP8 Linears counted as the unquantized model they stand for (+ the
        # bf16 one, lm_head)
        assert r.returncode == 0, r.stderr
        assert "15 Linear modules, 0 miss Marlin, 0 do not load" in r.stdout, r.stdout
    else:
        # compressed-tensors FP8 is checked as vLLM serves it, by its scheme's rules: 128 x 128 blocks per
        # shard, and the 320-row gate/up (160 per shard at tp 2) and 256-row q/o... halves are not whole blocks
        assert "15 Linear modules" in r.stdout and "do not load" in r.stdout, r.stdout
        assert ", 0 do not load" not in r.stdout, r.stdout


@pytest.mark.parametrize("method,fmt", [("rtn", "gptq"), ("gptq", "gptq"), ("awq", "compressed-tensors")])
def test_quantize_fp8_source_end_to_end(method, fmt, tmp_path):
    src, model = build(tmp_path, "block")
    out = tmp_path / f"out-{method}"
    qdist("quantize", "--model", src, "--output", out, "--calib", TEXT, "--method", method, "--bits", "8",
          "--group-size", "64", "--format", fmt, "--nsamples", "4", "--seqlen", "128", "--quiet")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == fmt
    names = tensor_names(out)
    assert not [n for n in names if n.endswith("weight_scale_inv")], "the FP8 scales must not reach the export"
    assert ("model.layers.1.mlp.down_proj.qweight" if fmt == "gptq" else
            "model.layers.1.mlp.down_proj.weight_packed") in names
    # 8-bit GPTQ of the dequantized model stays close to it
    ids, ours = qdist_logits(out, tmp_path)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids)[None]).logits[0, :-1].double().numpy()
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    print(f"{method} w8 of the fp8 source: rel err {rel:.2e}")
    assert rel < 0.05


def test_fake_export_of_fp8_source_drops_its_quantization_config(tmp_path):
    src, _ = build(tmp_path, "block")
    out = tmp_path / "fake"
    qdist("quantize", "--model", src, "--output", out, "--method", "rtn", "--bits", "4", "--group-size", "64",
          "--format", "fake", "--quiet")
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    names = tensor_names(out)
    assert names and not [n for n in names if "scale_inv" in n]


def test_recipe_skip_of_an_fp8_linear_is_refused_before_work(tmp_path):
    src, _ = build(tmp_path, "block")
    recipe = tmp_path / "skip.json"
    recipe.write_text(json.dumps({"overrides": [{"match": "layers\\.0\\.mlp\\.down_proj$", "skip": True}]}))
    out = tmp_path / "o"
    r = qdist("quantize", "--model", src, "--output", out, "--method", "rtn", "--bits", "4", "--group-size", "64",
              "--format", "gptq", "--recipe", recipe, "--quiet", ok=False, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "model.layers.0.mlp.down_proj.weight" in r.stderr and "FP8" in r.stderr, r.stderr
    assert not out.exists()
    # skipping the Linear the checkpoint keeps in bf16 is fine
    recipe.write_text(json.dumps({"overrides": [{"match": "layers\\.1\\.self_attn\\.o_proj$", "skip": True}]}))
    qdist("quantize", "--model", src, "--output", out, "--method", "rtn", "--bits", "4", "--group-size", "64",
          "--format", "gptq", "--recipe", recipe, "--quiet", timeout=300)
    assert "model.layers.1.self_attn.o_proj.weight" in tensor_names(out)


def damage(src, name, fn):
    with safe_open(str(src / "model.safetensors"), "pt") as f:
        d = {k: f.get_tensor(k) for k in f.keys()}
    fn(d)
    save_file(d, str(src / "model.safetensors"))


@pytest.mark.parametrize("variant", ["block", "ct-block", "ct-channel"])
@pytest.mark.parametrize("case", ["missing", "shape", "nan", "inf", "negative"])
def test_bad_scale_is_one_line_naming_the_tensor(case, variant, tmp_path):
    """the FP8 source and the compressed-tensors float-quantized checkpoint alike (one reader)"""
    src, _ = build(tmp_path, variant)
    name = "model.layers.1.mlp.down_proj.weight_scale" + ("" if variant.startswith("ct-") else "_inv")

    def edit(d):
        if case == "missing":
            del d[name]
        elif case == "shape":
            d[name] = torch.ones(2, 2)
        else:
            d[name] = d[name].clone()
            d[name][1, 0] = {"nan": float("nan"), "inf": float("inf"), "negative": -1.0}[case]
    damage(src, name, edit)
    for cmd in (["eval", "--model", src, "--data", TEXT, "--seqlen", "64", "--max-windows", "1"],
                ["quantize", "--model", src, "--output", tmp_path / "o", "--method", "rtn",
                 "--bits", "4", "--group-size", "64", "--format", "gptq", "--quiet"]):
        r = qdist(*cmd, ok=False, timeout=300)
        assert r.returncode == 1, (cmd[0], r.stdout, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
        want = "model.layers.1.mlp.down_proj" if case == "missing" else name
        assert len(lines) == 1 and want in lines[0], r.stderr
        # refused before any work: no output, no staging
        assert not (tmp_path / "o").exists() and not (tmp_path / "o.qdist-staging").exists()


@pytest.mark.parametrize("variant", ["block", "ct-block", "ct-channel", "tensor"])
def test_nan_code_is_one_line_naming_the_weight(variant, tmp_path):
    """e4m3 has no infinity; 0x7f / 0xff are NaN, which no quantizer writes: reading one is an error naming the
    weight and the element, whichever checkpoint layout holds it"""
    src, _ = build(tmp_path, variant)
    name = "model.layers.1.mlp.down_proj.weight"

    def edit(d):
        q = d[name].clone()
        q.view(torch.uint8)[3, 5] = 0x7F
        d[name] = q
    damage(src, name, edit)
    r = qdist("eval", "--model", src, "--data", TEXT, "--seqlen", "64", "--max-windows", "1", ok=False, timeout=300)
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert r.returncode == 1 and len(lines) == 1 and f"'{name}' holds a NaN at [3, 5]" in lines[0], r.stderr
