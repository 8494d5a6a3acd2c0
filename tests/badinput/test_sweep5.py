# SPDX-License-Identifier: MIT
"""The fifth bad-input sweep.

strictjson's cases: a JSON number, boolean or string of the wrong type, written by a user or another tool,
is one line naming the file and the key and what was expected, exit 1, nothing written (sweep 4 row 16:
num_bits "8" and group_size 16.5 were read as absent / 16). One case per reader of src/core/qd-json.h:
an integer, a finite number, a boolean, a string, an object / array, a [rows, cols] pair, and each place
that reads them (config.json's quantization_config of an export and of an FP8 source, a recipe, the
qdist_report.json of a fake-quant directory, tokenizer.json, tokenizer_config.json). The expected type in each message is the
type the field has in the writer's own schema (compressed-tensors' QuantizationArgs, transformers'
FineGrainedFP8Config, docs/numerics.md for recipes), not qdist's output.

sweep5moe's cases (MoE / FP8 config semantics) are in test_sweep5_moe.py.
"""
import json

import pytest

from test_sweep3 import nothing_written, one_line, run, tiny
from test_sweep4 import copy_export, evaluate, exports, group  # noqa: F401 (exports is a fixture)

# ---- strictjson: mistyped JSON fields ----

W = "quantization_config.config_groups.group_0.weights"


def edit_config(d, edit):
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))


def refused_by_eval_and_inspect(d, *needles):
    for name, r in (("eval", evaluate(d)), ("inspect", run("inspect", d))):
        assert r.returncode == 1, (name, r.stderr)
        one_line(r, "error", d / "config.json", *needles)
        assert "ppl" not in r.stdout


def weights(**kw):
    return lambda c: group(c)["weights"].update(**kw)


# (scheme of the export, the edit, the key named, what it is, what was expected); every one of the first
# five evaluated (rc 0, a perplexity) before: the field was taken as absent or truncated
# (scheme of the export, the edit, the key named, what it is, what was expected, whether compressed-tensors'
# QuantizationArgs refuses the edited weights too: None where the edit is not of the weights). Every one of them
# evaluated before (rc 0 with a perplexity) or was refused with a line about something else (strategy "?",
# num_bits 2147483647, group_size -1). compressed-tensors (pydantic in lax mode) turns "8", "true" and true
# into 8, True and 1; qdist refuses them as the brief's rule says: no tool writes them, and a hand edit that
# wrote a string may not mean what lax parsing makes of it (group_size true is 1).
EXPORT_CASES = [
    ("wna16", weights(num_bits="8"), W + ".num_bits", 'the string "8"', "an integer in 1..64", False),
    ("nvfp4a16", weights(group_size=16.5), W + ".group_size", "the number 16.5", "an integer >= -1", True),
    ("w8a8-int8", weights(strategy=3), W + ".strategy", "the number 3", "a string", True),
    ("wna16", weights(symmetric="true"), W + ".symmetric", 'the string "true"', "true or false", False),
    ("w8a8-int8", weights(num_bits=1e300), W + ".num_bits", "the number 1.0000000000000001e+300",
     "an integer in 1..64", True),
    ("wna16", weights(group_size=True), W + ".group_size", "true", "an integer >= -1", False),
    ("w8a8-int8", lambda c: group(c).update(targets=["Linear", 3]), "quantization_config.config_groups.group_0"
     ".targets[1]", "the number 3", "a string", None),
    ("w8a8-int8", lambda c: group(c)["input_activations"].update(dynamic="yes"),
     "quantization_config.config_groups.group_0.input_activations.dynamic", 'the string "yes"',
     'true, false or "local"', None),
    ("fp8-dynamic", lambda c: c["quantization_config"].update(config_groups=[group(c)]),
     "quantization_config.config_groups", "an array", "an object", None),
    ("fp8-dynamic", lambda c: c["quantization_config"].update(quant_method=3),
     "quantization_config.quant_method", "the number 3", "a string", None),
]


def ct_refuses(weights_dict):
    from compressed_tensors.quantization import QuantizationArgs
    try:
        QuantizationArgs(**weights_dict)
    except ValueError:  # pydantic's ValidationError is one
        return True
    return False


@pytest.mark.parametrize("scheme,edit,key,what,expected,ct", EXPORT_CASES,
                         ids=[f"{c[0]}-{c[2].rsplit('.', 1)[1]}-{c[3]}" for c in EXPORT_CASES])
def test_a_mistyped_field_of_an_export_config_is_refused(tmp_path, exports, scheme, edit, key, what, expected, ct):
    d = copy_export(exports(scheme), tmp_path / "exp")
    edit_config(d, edit)
    if ct is not None:
        assert ct_refuses(group(json.loads((d / "config.json").read_text()))["weights"]) == ct
    refused_by_eval_and_inspect(d, f"{key} is {what}; expected {expected}")


@pytest.mark.parametrize("value", [None, -1])
def test_the_none_group_size_each_tool_writes_still_reads(tmp_path, exports, value):
    """llm-compressor writes group_size null for a channel strategy, GPTQModel -1: both mean none"""
    d = copy_export(exports("w8a8-int8"), tmp_path / "exp")
    edit_config(d, weights(group_size=value))
    r = evaluate(d)
    assert r.returncode == 0, r.stderr
    assert "ppl" in r.stdout


def test_a_block_structure_string_reads_as_compressed_tensors_reads_it(tmp_path):
    """compressed-tensors still reads block_structure "RxC" (written before it became a list): the same
    checkpoint, the same perplexity; a malformed string is refused as compressed-tensors refuses it"""
    from compressed_tensors.quantization import QuantizationArgs
    recipe = tmp_path / "recipe.json"  # fp8-block needs K % 128 == 0: only down_proj (K = 128) of the tiny Llama
    recipe.write_text(json.dumps({"scheme": "fp8-block",
                                  "overrides": [{"match": "self_attn|gate_proj|up_proj", "skip": True}]}))
    base = tmp_path / "base"
    r = run("quantize", "--model", tiny(tmp_path), "--output", base, "--method", "rtn", "--backend", "cpu", "--quiet",
            "--recipe", recipe)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((base / "config.json").read_text())
    name, g = next((n, g) for n, g in cfg["quantization_config"]["config_groups"].items()
                   if g["weights"]["strategy"] == "block")
    rows, cols = g["weights"]["block_structure"]
    assert QuantizationArgs(**{**g["weights"], "block_structure": f"{rows}x{cols}"}).block_structure == [rows, cols]
    assert ct_refuses({**g["weights"], "block_structure": f"{rows}x"})

    def block_structure(value):
        return lambda c: c["quantization_config"]["config_groups"][name]["weights"].update(block_structure=value)
    d = copy_export(base, tmp_path / "exp")
    edit_config(d, block_structure(f"{rows}x{cols}"))
    want, got = evaluate(base), evaluate(d)
    assert want.returncode == 0 and got.returncode == 0, (want.stderr, got.stderr)
    assert got.stdout.startswith("ppl ") and got.stdout.split()[:2] == want.stdout.split()[:2]
    edit_config(d, block_structure(f"{rows}x"))
    refused_by_eval_and_inspect(d, f'quantization_config.config_groups.{name}.weights.block_structure is the string '
                                   f'"{rows}x"; expected [rows, cols], two integers in 1..65536 (or the string '
                                   '"<rows>x<cols>")')


def fp8_source(tmp_path, q):
    """the tiny Llama with an fp8 quantization_config q (its weights stay float: the config is refused
    before any tensor is read)"""
    m = tiny(tmp_path)
    edit_config(m, lambda c: c.update(quantization_config=q))
    return m


FP8_SOURCES = [
    ({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, "128"]},
     "quantization_config.weight_block_size[1]", 'the string "128"', "an integer in 1..65536"),
    ({"quant_method": "fp8", "weight_block_size": 128},
     "quantization_config.weight_block_size", "the number 128", "[rows, cols], two integers in 1..65536"),
    ({"quant_method": "fp8", "fmt": ["e4m3"]}, "quantization_config.fmt", "an array", "a string"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "block",
                                           "block_structure": [128, 128.5]}}}},
     W + ".block_structure[1]", "the number 128.5", "an integer in 1..65536"),
]


@pytest.mark.parametrize("q,key,what,expected", FP8_SOURCES, ids=[c[1].rsplit(".", 1)[1] for c in FP8_SOURCES])
def test_a_mistyped_fp8_source_config_is_refused_before_work(tmp_path, q, key, what, expected):
    m = fp8_source(tmp_path, q)
    out = tmp_path / "out"
    r = run("quantize", "--model", m, "--output", out, "--method", "rtn", "--backend", "cpu", "--quiet")
    assert r.returncode == 1, r.stderr
    one_line(r, "error", m / "config.json", f"{key} is {what}; expected {expected}")
    nothing_written(tmp_path, out)


RECIPES = [
    ({"bits": "4"}, "bits", 'the string "4"', "an integer in 2..8"),
    ({"group_size": 16.5}, "group_size", "the number 16.5", "an integer in -1..1048576"),
    ({"sym": 1}, "sym", "the number 1", "true or false"),
    ({"calibration": {"nsamples": "128"}}, "calibration.nsamples", 'the string "128"', "an integer in 1..1000000"),
    ({"overrides": [{"match": "mlp", "damp": 1e300}]}, "overrides[0].damp", "the number 1.0000000000000001e+300",
     "a number in 0..0.999"),
]


@pytest.mark.parametrize("recipe,key,what,expected", RECIPES, ids=[c[1] for c in RECIPES])
def test_a_mistyped_recipe_field_is_refused_before_work(tmp_path, recipe, key, what, expected):
    m = tiny(tmp_path)
    rp = tmp_path / "recipe.json"
    rp.write_text(json.dumps({"method": "rtn", **recipe}))
    out = tmp_path / "out"
    r = run("quantize", "--model", m, "--output", out, "--recipe", rp, "--backend", "cpu", "--quiet")
    assert r.returncode == 1, r.stderr
    one_line(r, "error", rp, f"{key} is {what}; expected {expected}")
    nothing_written(tmp_path, out)


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake")
    out = root / "fake"
    r = run("quantize", "--model", tiny(root), "--output", out, "--method", "rtn", "--backend", "cpu", "--quiet",
            "--bits", "4", "--group-size", "32", "--format", "fake")
    assert r.returncode == 0, r.stderr
    return out


Q = "model.layers.0.self_attn.q_proj"
REPORTS = [
    (lambda rep: rep["modules"][Q].update(bits="4"), f"modules.{Q}.bits", 'the string "4"', "an integer in 0..64"),
    (lambda rep: rep["modules"][Q].update(group_size=32.5), f"modules.{Q}.group_size", "the number 32.5",
     "an integer >= -1"),
    (lambda rep: rep["settings"].update(damp="0.01"), "settings.damp", 'the string "0.01"',
     "a finite number in 0..1"),
    (lambda rep: rep["settings"].update(act_order=0), "settings.act_order", "the number 0", "true or false"),
    (lambda rep: rep.update(modules="all"), "modules", 'the string "all"',
     'an object {prefix: {...}} or a list of {"name", ...}'),
]


@pytest.mark.parametrize("edit,key,what,expected", REPORTS, ids=[c[1].rsplit(".", 1)[-1] for c in REPORTS])
def test_a_mistyped_fake_dir_report_is_refused_by_export(tmp_path, fake_dir, edit, key, what, expected):
    d = copy_export(fake_dir, tmp_path / "fake")
    rep = json.loads((d / "qdist_report.json").read_text())
    edit(rep)
    (d / "qdist_report.json").write_text(json.dumps(rep))
    out = tmp_path / "out"
    r = run("export", "--input", d, "--output", out, "--format", "gptq")
    assert r.returncode == 1, r.stderr
    one_line(r, "error", d / "qdist_report.json", f"{key} is {what}; expected {expected}")
    nothing_written(tmp_path, out)


def test_the_fake_dir_report_as_written_still_exports(tmp_path, fake_dir):
    out = tmp_path / "out"
    r = run("export", "--input", fake_dir, "--output", out, "--format", "gptq")
    assert r.returncode == 0, r.stderr
    assert (out / "config.json").exists()


def vocab_entry(t, v):
    t["model"]["vocab"]["<0x00>"] = v


def strip_start(t, v):
    t["decoder"]["decoders"][3]["start"] = v


TOKENIZERS = [
    (lambda t: vocab_entry(t, 3.5), "model.vocab.<0x00>", "the number 3.5", "an integer in 0..1000000000"),
    # a key of the file is printed escaped: the line stays one line and sends no escape to the terminal
    (lambda t: t["model"]["vocab"].update({"\x1b[2J\n": "7"}), "model.vocab.\\x1b[2J\\x0a", 'the string "7"',
     "an integer in 0..1000000000"),
    (lambda t: t["model"].update(byte_fallback="true"), "model.byte_fallback", 'the string "true"', "true or false"),
    (lambda t: t["added_tokens"][1].update(special=1), "added_tokens[1].special", "the number 1", "true or false"),
    (lambda t: strip_start(t, "1"), "decoder Strip.start", 'the string "1"', "an integer >= 0"),
]


@pytest.mark.parametrize("edit,key,what,expected", TOKENIZERS, ids=[c[1] for c in TOKENIZERS])
def test_a_mistyped_tokenizer_field_is_refused(tmp_path, edit, key, what, expected):
    """qdist took each as truncated or as the default; the tokenizers library refuses each"""
    from tokenizers import Tokenizer
    m = tiny(tmp_path)
    t = json.loads((m / "tokenizer.json").read_text())
    edit(t)
    with pytest.raises(Exception):
        Tokenizer.from_str(json.dumps(t))
    (m / "tokenizer.json").write_text(json.dumps(t))
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "Once upon a time"}\n')
    out = tmp_path / "ids.jsonl"
    r = run("tokenize", "--model", m, "--input", data, "--output", out)
    assert r.returncode == 1, r.stderr
    one_line(r, "error", m / "tokenizer.json", f"{key} is {what}; expected {expected}")
    assert not out.exists()


@pytest.mark.parametrize("field,value,key,what,expected", [
    ("chat_template", 5, "chat_template", "the number 5", 'a string or a list of {"name", "template"}'),
    ("chat_template", [{"name": "default", "template": 7}], "chat_template[0].template", "the number 7", "a string"),
    ("bos_token", {"content": None}, "bos_token.content", "null", "a string"),
])
def test_a_mistyped_tokenizer_config_field_is_refused_before_work(tmp_path, field, value, key, what, expected):
    """transformers' tokenizer config types these (a template string or named list; a token string or
    AddedToken); qdist read any other type as absent ("has no chat_template")"""
    m = tiny(tmp_path)
    cfg = json.loads((m / "tokenizer_config.json").read_text())
    cfg[field] = value
    (m / "tokenizer_config.json").write_text(json.dumps(cfg))
    calib = tmp_path / "chat.jsonl"
    calib.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Once upon a time {i}"},
                                                      {"role": "assistant", "content": "there was a cat"}]}) + "\n"
                             for i in range(4)))
    out = tmp_path / "out"
    r = run("quantize", "--model", m, "--output", out, "--method", "gptq", "--backend", "cpu", "--quiet",
            "--group-size", "32", "--calib", calib, "--nsamples", "2", "--seqlen", "16")
    assert r.returncode == 1, r.stderr
    one_line(r, "error", m / "tokenizer_config.json", f"{key} is {what}; expected {expected}")
    nothing_written(tmp_path, out)
