# SPDX-License-Identifier: MIT
"""`qdist quantize --kv-cache fp8|fp8-head` (issue 20 item 4): fp8 KV-cache scales calibrated in the
quantize run and written as llm-compressor writes them, checked with the libraries users run (CPU):
- quantization_config.kv_cache_scheme equals, field by field, compressed-tensors' QuantizationArgs of
  llm-compressor's fp8 KV-cache recipe (num_bits 8, type float, strategy tensor / attn_head, dynamic
  false, symmetric) with the static min-max observer named;
- model.layers.N.self_attn.k_scale / v_scale equal amax / 448 of the keys and values that transformers
  hands its cache (after rope: what compressed-tensors' QuantizedKVCache sees) over the same calibration
  token ids (`qdist tokenize` prints them), block N fed by the run's quantized blocks 0..N-1 (the fake
  directory's weights) and holding its own full-precision weights, as llm-compressor's sequential
  pipeline observes a layer before quantizing it;
- transformers + compressed-tensors load the export with the scales in place and generate;
- two data-parallel ranks give the one-rank bytes; a run killed after a block resumes to them;
- --format gptq / awq / fake, a run without --calib and an MLA model are refused in one line.
"""
import json
import os
import sys

import numpy as np
import pytest
import torch
import transformers
from compressed_tensors.quantization import QuantizationArgs

import qdtest as qt
from qdtest import STORIES, qdist, tensors
from qdtest import WIKI as CALIB
from qdtest import checkpoint_bytes as files_bytes

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ref"))
from ct_kv_shim import ct_attention_shim  # noqa: E402

NS, SL = 4, 64
COMMON = ["--backend", "cpu", "--quiet", "--progress", "none", "--calib", CALIB, "--nsamples", str(NS),
          "--seqlen", str(SL), "--group-size", "-1"]
GPTQ = ["--method", "gptq"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("kv")
    out = {}
    for kv in ("fp8", "fp8-head"):
        o = str(d / kv)
        qdist("quantize", "--model", STORIES, "--output", o, "--format", "compressed-tensors", "--kv-cache", kv,
              *GPTQ, *COMMON)
        out[kv] = o
    # the same run's quantized weights (fp32 scales, as the compressed-tensors export of an fp32 model)
    out["fake"] = str(d / "fake")
    qdist("quantize", "--model", STORIES, "--output", out["fake"], "--format", "fake", "--scale-dtype", "f32", *GPTQ,
          *COMMON)
    r = qdist("tokenize", "--model", STORIES, "--calib", CALIB, "--nsamples", str(NS), "--seqlen", str(SL))
    out["ids"] = np.asarray(json.loads(r.stdout)["ids"], dtype=np.int64).reshape(-1).tolist()
    return out


class RecordingCache(transformers.DynamicCache):
    """the keys and values each layer hands its cache: what compressed-tensors' QuantizedKVCache observes"""

    def __init__(self, config, seen):
        super().__init__(config=config)
        self.seen = seen

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.seen.setdefault(layer_idx, []).append((key_states.detach().clone(), value_states.detach().clone()))
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)


def reference_amax(ids, fake):
    """per layer N: [kv_heads] amax of keys and of values over every calibration token, layers < N holding the
    run's quantized weights (fake None: the source's, AWQ's full-precision chain) and layer N its own"""
    src = transformers.AutoModelForCausalLM.from_pretrained(STORIES, dtype=torch.float32)
    fk = tensors(fake) if fake else {}
    L = src.config.num_hidden_layers
    ids = torch.tensor(np.asarray(ids, dtype=np.int64).reshape(NS, SL))
    res = []
    for n in range(L):
        m = transformers.AutoModelForCausalLM.from_pretrained(STORIES, dtype=torch.float32)
        with torch.no_grad():
            for name, mod in m.named_modules():
                if isinstance(mod, torch.nn.Linear) and name + ".qd_codes" in fk and \
                        int(name.split(".")[2]) < n:
                    mod.weight.copy_(fk[name + ".weight"].float())
            seen = {}
            m(ids, past_key_values=RecordingCache(m.config, seen), use_cache=True)
        k = torch.cat([x[0] for x in seen[n]], 0)  # [batch, kv_heads, seq, head_dim]
        v = torch.cat([x[1] for x in seen[n]], 0)
        res.append((k.abs().amax(dim=(0, 2, 3)).double().numpy(), v.abs().amax(dim=(0, 2, 3)).double().numpy()))
    return res


@pytest.mark.parametrize("kv", ["fp8", "fp8-head"])
def test_config_and_scales(kv, runs):
    out = runs[kv]
    q = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    strategy = "attn_head" if kv == "fp8-head" else "tensor"
    # llm-compressor's recipe (examples/quantization_kv_cache), the observer named as qdist computes it
    want = QuantizationArgs(num_bits=8, type="float", strategy=strategy, dynamic=False, symmetric=True,
                            observer="static_minmax").model_dump(mode="json")
    got = q["kv_cache_scheme"]
    assert set(got) == set(want), (got, want)
    for key, v in want.items():
        assert got[key] == v, (key, got[key], v)
    QuantizationArgs.model_validate(got)  # the library accepts it
    t = tensors(out)
    ref = reference_amax(runs["ids"], runs["fake"])
    H = 4
    for n, (ka, va) in enumerate(ref):
        for what, amax in (("k_scale", ka), ("v_scale", va)):
            s = t[f"model.layers.{n}.self_attn.{what}"]
            assert s.dtype == torch.float32  # the model's dtype, as compressed-tensors initialises it
            if kv == "fp8":
                assert tuple(s.shape) == (1,)
                want_s = np.array([amax.max() / 448.0])
            else:
                assert tuple(s.shape) == (H, 1, 1)
                want_s = amax / 448.0
            got_s = s.double().numpy().reshape(-1)
            np.testing.assert_allclose(got_s, want_s, rtol=2e-6, err_msg=f"layer {n} {what}")
    # only the scales were added: the Linears are those of a run without --kv-cache (checked on fp8)
    assert sum(1 for k in t if k.endswith("_scale") and ".self_attn." in k and k.split(".")[-1] in
               ("k_scale", "v_scale")) == 2 * len(ref)


def fp8_fake(x, s):
    return torch.clamp(x / s, -448, 448).to(torch.float8_e4m3fn).float() * s


@pytest.mark.parametrize("kv", ["fp8", "fp8-head"])
def test_transformers_loads_scales(kv, runs):
    """transformers + compressed-tensors (with tests/ref/ct_kv_shim.py) give each attention module the export's
    k_scale/v_scale in the shape and dtype the library initialises, and quantize the keys and values it
    caches with them: the logits equal those of the fake-quant model whose cache this test quantizes
    itself (e4m3(clamp(x / s)) * s); the model generates"""
    out = runs[kv]
    t = tensors(out)
    with ct_attention_shim():
        m = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    n = 0
    for name, mod in m.named_modules():
        if hasattr(mod, "k_scale") and name.endswith("self_attn"):
            for what in ("k_scale", "v_scale"):
                p = getattr(mod, what)
                assert p.shape == t[name + "." + what].shape and p.dtype == torch.float32, (name, p.shape)
                assert torch.equal(p.detach(), t[name + "." + what]), name
            n += 1
    assert n == m.config.num_hidden_layers
    ids = torch.tensor([runs["ids"][:SL]])
    with torch.no_grad():
        got = m(ids).logits
    # the reference: the fake-quant weights, the cache quantized by this test
    ref = transformers.AutoModelForCausalLM.from_pretrained(STORIES, dtype=torch.float32)
    fk = tensors(runs["fake"])
    seen = {}

    class QuantCache(transformers.DynamicCache):
        def update(self, k, v, layer_idx, *args, **kwargs):
            pre = f"model.layers.{layer_idx}.self_attn."
            ks, vs = t[pre + "k_scale"], t[pre + "v_scale"]
            seen[layer_idx] = 1
            return super().update(fp8_fake(k, ks), fp8_fake(v, vs), layer_idx, *args, **kwargs)

    with torch.no_grad():
        for name, mod in ref.named_modules():
            if isinstance(mod, torch.nn.Linear) and name + ".qd_codes" in fk:
                mod.weight.copy_(fk[name + ".weight"].float())
        want = ref(ids, past_key_values=QuantCache(config=ref.config), use_cache=True).logits
        plain = ref(ids).logits
    assert len(seen) == m.config.num_hidden_layers
    err = float((got - want).norm() / want.norm())
    assert err < 1e-5, err
    assert float((plain - want).norm()) > 0  # the cache quantization is visible
    with torch.no_grad():
        gen = m.generate(ids[:, :8], max_new_tokens=4, do_sample=False)
    assert gen.shape[1] == 12


def check_scales(out, ref, per_head):
    t = tensors(out)
    for n, (ka, va) in enumerate(ref):
        for what, amax in (("k_scale", ka), ("v_scale", va)):
            got = t[f"model.layers.{n}.self_attn.{what}"].double().numpy().reshape(-1)
            np.testing.assert_allclose(got, amax / 448.0 if per_head else [amax.max() / 448.0], rtol=2e-6,
                                       err_msg=f"layer {n} {what}")


@pytest.mark.parametrize("case", ["awq", "fp8-dynamic", "w8a8-int8-rtn"])
def test_every_weight_scheme(case, runs, tmp_path):
    """the scales ride along any weight scheme and method (the format defaults to compressed-tensors), each
    equal to the reference over the same chain: AWQ's is full precision (the source model's amax), RTN's
    fp8-dynamic / w8a8-int8 blocks are quantized (their fake directory's weights); transformers loads each"""
    out, fake = str(tmp_path / case), str(tmp_path / (case + "-fake"))
    # --sym: an asymmetric compressed-tensors export does not load in this transformers (zero points, not kv)
    extra = {"awq": ["--method", "awq", "--sym", "--calib-mode", "random"],  # the ids of runs["ids"]
             "fp8-dynamic": ["--scheme", "fp8-dynamic"],
             "w8a8-int8-rtn": ["--scheme", "w8a8-int8", "--method", "rtn"]}[case]
    common = [a for a in COMMON if case == "awq" or a not in ("--group-size", "-1")]
    qdist("quantize", "--model", STORIES, "--output", out, "--kv-cache", "fp8-head", *common, *extra)
    q = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    assert q["kv_cache_scheme"]["strategy"] == "attn_head" and q["config_groups"]
    if case == "awq":
        ref = reference_amax(runs["ids"], None)
    else:  # RTN ignores --calib without --kv-cache: the fake run's weights are the same
        qdist("quantize", "--model", STORIES, "--output", fake, "--format", "fake", "--scale-dtype", "f32", *common,
              *extra)
        ref = reference_amax(runs["ids"], fake)
    check_scales(out, ref, True)
    with ct_attention_shim():
        m = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    t = tensors(out)
    assert torch.equal(m.model.layers[1].self_attn.v_scale.detach(), t["model.layers.1.self_attn.v_scale"])


def test_mla_refused(tmp_path):
    import test_dsv3_model as ds
    src = ds.build("q_lora", tmp_path / "dsv3")
    out = str(tmp_path / "out")
    r = qdist("quantize", "--model", str(src), "--output", out, "--kv-cache", "fp8", *GPTQ, *COMMON, ok=False)
    qt.one_line_error(r, 1, "MLA")
    assert not os.path.exists(out)


def test_two_ranks_and_resume_equal_one(runs, tmp_path):
    """2 data-parallel ranks, 2 pipeline stages, the pipeline layout, the export from the staging and a run
    killed after block 2 then resumed all give the one-rank bytes; a resume with fp8-head is refused"""
    args = ["quantize", "--model", STORIES, "--format", "compressed-tensors", *GPTQ, *COMMON]
    one, two, res = str(tmp_path / "one"), str(tmp_path / "two"), str(tmp_path / "res")
    args_kv = [*args, "--kv-cache", "fp8"]
    qdist(*args_kv, "--numerics", "exact", "--output", one)
    qt.mpirun(2, *args_kv, "--numerics", "exact", "--output", two)
    assert files_bytes(one) == files_bytes(two)
    # two pipeline stages (each stage stages its blocks' scales), and the export from the staging after the
    # run instead of the streamed one
    for i, (extra, env) in enumerate([(["--pipeline-stages", "2"], None), (["--parallel", "pipeline"], None),
                                      ([], dict(os.environ, QD_EXPORT_STREAM="0"))]):
        o = str(tmp_path / f"x{i}")
        qt.mpirun(2 if extra else 1, *args_kv, "--numerics", "exact", "--output", o, *extra, env=env)
        assert files_bytes(o) == files_bytes(one), extra
    env = dict(os.environ, QD_INJECT_KILL="0:2")
    r = qdist(*args_kv, "--numerics", "exact", "--output", res, ok=False, env=env)
    assert r.returncode != 0 and not os.path.exists(res)
    bad = qdist(*args, "--numerics", "exact", "--output", res, "--resume", "--kv-cache", "fp8-head", ok=False)
    assert bad.returncode == 1 and "kv_cache" in bad.stderr and not os.path.exists(res), bad.stderr
    qdist(*args_kv, "--numerics", "exact", "--output", res, "--resume")
    assert files_bytes(res) == files_bytes(one)


@pytest.mark.parametrize("extra,needle", [
    (["--kv-cache", "fp8", "--format", "gptq", *GPTQ], "--format gptq has no KV-cache scales"),
    (["--kv-cache", "fp8", "--method", "awq", "--format", "awq"], "--format awq has no KV-cache scales"),
    (["--kv-cache", "fp8", "--format", "fake", *GPTQ], "--format fake has no KV-cache scales"),
    (["--kv-cache", "fp16", *GPTQ], "fp16"),
])
def test_refusals(extra, needle, tmp_path):
    out = str(tmp_path / "out")
    r = qdist("quantize", "--model", STORIES, "--output", out, *COMMON, *extra, ok=False)
    qt.one_line_error(r, 2, needle)
    assert not os.path.exists(out)


def test_needs_calibration(tmp_path):
    out = str(tmp_path / "out")
    r = qdist("quantize", "--model", STORIES, "--output", out, "--kv-cache", "fp8", "--method", "rtn", "--backend",
              "cpu", "--format", "compressed-tensors", "--quiet", ok=False)
    qt.one_line_error(r, 2, "add --calib")
    assert not os.path.exists(out)
