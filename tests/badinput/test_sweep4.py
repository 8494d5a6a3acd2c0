# SPDX-License-Identifier: MIT
"""The fourth bad-input sweep (docs/bad-input-sweep-4.md has the table): what sweep 3 left, each now one
clear line and the right exit:
  - a compressed-tensors export whose config.json contradicts its tensors (format, type, num_bits,
    strategy, group_size / block against the scale's shape, a static input scale missing), for fp8, int8,
    packed int, nvfp4 and mxfp4 alike: eval printed a perplexity and inspect exited 0;
  - an int8 weight without its weight_scale: named no scale;
  - a non-finite scale: eval said "non-finite loss" naming only the directory;
  - --moe-calibration all / --moe-min-tokens on a dense model: silently ignored.
The tiny Llama and the helpers are test_sweep3's.
"""
import json
import struct

import pytest

from test_sweep3 import TEXT, drop_tensor, nothing_written, one_line, quantize, run, tiny

Q = "model.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """one RTN export of the tiny Llama per scheme, made on first use (copied by each test)"""
    root = tmp_path_factory.mktemp("exports")
    made = {}

    def get(scheme):
        if scheme not in made:
            out = root / scheme
            extra = ["--scheme", scheme] if scheme != "wna16" else ["--format", "compressed-tensors", "--bits", "8",
                                                                             "--group-size", "32"]
            if scheme == "fp8-static":
                calib = root / "calib.txt"
                calib.write_text(open(TEXT, encoding="utf-8").read()[:50000], encoding="utf-8")
                extra += ["--calib", calib, "--nsamples", "2", "--seqlen", "16"]
            if not (root / "llama").exists():
                tiny(root)
            r = run("quantize", "--model", root / "llama", "--output", out, "--method", "rtn", "--backend", "cpu",
                    "--quiet", *extra)
            assert r.returncode == 0, r.stderr
            made[scheme] = out
        return made[scheme]
    return get


def copy_export(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def evaluate(d):
    return run("eval", "--model", d, "--data", TEXT, "--seqlen", "32", "--max-windows", "1", "--backend", "cpu")


def group(cfg):
    return cfg["quantization_config"]["config_groups"]["group_0"]


# (scheme, what config.json is made to say, the edit); every one was evaluated (rc 0, a perplexity) before
CONTRADICTIONS = [
    ("fp8-dynamic", 'strategy "tensor"', lambda c: group(c)["weights"].update(strategy="tensor")),
    ("fp8-dynamic", 'type "int"', lambda c: group(c)["weights"].update(type="int")),
    ("fp8-dynamic", "num_bits 4", lambda c: group(c)["weights"].update(num_bits=4)),
    ("fp8-dynamic", 'format "int-quantized"', lambda c: group(c).update(format="int-quantized")),
    ("fp8-static", 'strategy "channel"', lambda c: group(c)["weights"].update(strategy="channel")),
    ("w8a8-int8", 'strategy "group", group_size 32',
     lambda c: group(c)["weights"].update(strategy="group", group_size=32)),
    ("w8a8-int8", 'strategy "tensor"', lambda c: group(c)["weights"].update(strategy="tensor")),
    ("w8a8-int8", 'strategy "bogus"', lambda c: group(c)["weights"].update(strategy="bogus")),
    ("w8a8-int8", "num_bits 16", lambda c: group(c)["weights"].update(num_bits=16)),
    ("w8a8-int8", 'type "float"', lambda c: group(c)["weights"].update(type="float")),
    ("w8a8-int8", "static input activations", lambda c: group(c)["input_activations"].update(dynamic=False)),
    ("wna16", 'strategy "channel"', lambda c: group(c)["weights"].update(strategy="channel", group_size=None)),
    ("wna16", 'strategy "group", group_size 48', lambda c: group(c)["weights"].update(group_size=48)),
    ("nvfp4a16", 'strategy "group"', lambda c: group(c)["weights"].update(strategy="group")),
    ("mxfp4", 'format "nvfp4-pack-quantized"', lambda c: group(c).update(format="nvfp4-pack-quantized")),
]


def test_an_export_whose_config_targets_none_of_its_quantized_linears_is_refused(tmp_path, exports):
    """found by the sweep: config_groups {} (or targets that match nothing) was evaluated by the tensors"""
    exp = copy_export(exports("w8a8-int8"), tmp_path / "exp")
    cfg = json.loads((exp / "config.json").read_text())
    group(cfg)["targets"] = ["re:nothing$"]
    (exp / "config.json").write_text(json.dumps(cfg))
    for r in (evaluate(exp), run("inspect", exp)):
        assert r.returncode == 1, r.stderr
        one_line(r, "error", exp / "config.json", "no quantization_config group targets", Q)


@pytest.mark.parametrize("method", ["bogus", "bitsandbytes"])
def test_an_export_of_a_method_qdist_does_not_read_is_refused(tmp_path, exports, method):
    """sweep 4 row 15: quant_method "bogus" over int8 tensors was evaluated, its codes taken as weights"""
    exp = copy_export(exports("w8a8-int8"), tmp_path / "exp")
    cfg = json.loads((exp / "config.json").read_text())
    cfg["quantization_config"]["quant_method"] = method
    (exp / "config.json").write_text(json.dumps(cfg))
    for name, r in (("eval", evaluate(exp)), ("inspect", run("inspect", exp))):
        assert r.returncode == 1, (name, r.stderr)
        one_line(r, "error", exp / "config.json", f'quant_method "{method}" is not one qdist reads')
        assert "ppl" not in r.stdout


@pytest.mark.parametrize("scheme,says,edit", CONTRADICTIONS, ids=[f"{s}-{w}" for s, w, _ in CONTRADICTIONS])
def test_an_export_whose_config_contradicts_its_tensors_is_refused(tmp_path, exports, scheme, says, edit):
    exp = copy_export(exports(scheme), tmp_path / "exp")
    cfg = json.loads((exp / "config.json").read_text())
    edit(cfg)
    (exp / "config.json").write_text(json.dumps(cfg))
    for name, r in (("eval", evaluate(exp)), ("inspect", run("inspect", exp))):
        assert r.returncode == 1, (name, r.stderr)
        one_line(r, "error", exp / "config.json", "quantization_config group of", "says " + says)
        assert "ppl" not in r.stdout


def test_an_fp8_static_export_without_its_input_scale_is_refused(tmp_path, exports):
    """vLLM loads input_scale for static activations; eval read the weights and printed a perplexity"""
    exp = copy_export(exports("fp8-static"), tmp_path / "exp")
    drop_tensor(exp / "model.safetensors", Q + ".input_scale")
    for r in (evaluate(exp), run("inspect", exp)):
        assert r.returncode == 1, r.stderr
        one_line(r, "error", exp / "config.json", "static input activations", Q + ".input_scale")


def test_an_int8_weight_without_its_scale_names_the_scale(tmp_path, exports):
    exp = copy_export(exports("w8a8-int8"), tmp_path / "exp")
    drop_tensor(exp / "model.safetensors", Q + ".weight_scale")
    for r in (evaluate(exp), run("inspect", exp)):
        assert r.returncode == 1, r.stderr
        one_line(r, "error", Q + ".weight_scale' is missing")


def poison_scale(path, name):
    """the first element of tensor `name` made NaN in its own dtype"""
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    h = json.loads(raw[8:8 + n])[name]
    at = 8 + n + h["data_offsets"][0]
    nan = {"F32": struct.pack("<f", float("nan")), "BF16": b"\xc0\x7f", "F16": b"\x00\x7e",
           "F8_E4M3": b"\x7f", "U8": b"\xff"}[h["dtype"]]  # U8: an E8M0 exponent, 0xff is NaN
    raw[at:at + len(nan)] = nan
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("scheme", ["w8a8-int8", "wna16", "nvfp4a16", "mxfp4", "fp8-dynamic"])
def test_a_nan_scale_names_the_tensor_and_its_file(tmp_path, exports, scheme):
    """eval said "non-finite loss in window 0" naming the directory (fp8: the directory and the tensor)"""
    exp = copy_export(exports(scheme), tmp_path / "exp")
    name = "model.layers.1.mlp.down_proj.weight_scale"
    poison_scale(exp / "model.safetensors", name)
    r = evaluate(exp)
    assert r.returncode == 1, r.stderr
    one_line(r, "error", f"{exp / 'model.safetensors'}: scale '{name}' element 0 is nan")
    assert "ppl" not in r.stdout


@pytest.mark.parametrize("flag,ranks", [(["--moe-calibration", "all"], 0), (["--moe-min-tokens", "4"], 0),
                                        (["--moe-calibration", "all"], 2)])
def test_moe_calibration_flags_on_a_dense_model_are_refused(tmp_path, flag, ranks):
    """as --expert-parallel on (sweep 3): a flag that changes nothing on this model is a usage error"""
    calib = tmp_path / "calib.txt"
    calib.write_text(open(TEXT, encoding="utf-8").read()[:50000], encoding="utf-8")
    out = tmp_path / "out"
    r = quantize(tiny(tmp_path), out, "gptq", "--calib", calib, "--nsamples", "2", "--seqlen", "16", *flag, mpi=ranks)
    assert r.returncode == 2, r.stderr
    one_line(r, "error", flag[0], "no experts (config.json)")
    nothing_written(tmp_path, out)
    # the default routed calibration stays a plain statement of the default
    r = quantize(tmp_path / "llama", out, "gptq", "--calib", calib, "--nsamples", "2", "--seqlen", "16",
                 "--moe-calibration", "routed", "--format", "fake")
    assert r.returncode == 0, r.stderr
