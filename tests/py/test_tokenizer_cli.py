# SPDX-License-Identifier: MIT
"""qdist tokenize on bad input: the invalid UTF-8 policy (checked against Python's own
errors="replace" decoding followed by `tokenizers`), refusal of tokenizer.json features qdist does not
implement (one line naming the component), a missing tokenizer.json, malformed lines."""
import json
import os
import subprocess

import pytest
import tokenizers

import qdtest as qt

MODELS = [str(qt.PYCODE), str(qt.STORIES)]


def tok(*args):
    """qdist tokenize, its output as bytes"""
    return subprocess.run([qt.QDIST, "tokenize"] + list(args), capture_output=True)


def model_dir(m):
    qt.need(os.path.join(m, "tokenizer.json"))
    return m


@pytest.mark.parametrize("model", MODELS)
def test_invalid_utf8_is_replaced_like_python(model, tmp_path):
    model_dir(model)
    raw = [b'{"text": "abc\xff\xfe d\xe2\x82 e\xf0\x9f\x98"}', b'{"text": "\xc0\xaf \xed\xa0\x80 x\xf4\x90\x80\x80y"}',
           b'{"text": "caf\xc3\xa9 \xe9t\xe9 \xe2\x82\xac\xe2"}']
    path = tmp_path / "bad-utf8.jsonl"
    path.write_bytes(b"\n".join(raw) + b"\n")
    r = tok("--model", model, "--input", str(path))
    assert r.returncode == 0, r.stderr
    hf = tokenizers.Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    want = [hf.encode(json.loads(line.decode("utf-8", "replace"))["text"]).ids for line in raw]
    assert [json.loads(l) for l in r.stdout.decode().splitlines()] == want


def _edited(tmp_path, edit):
    base = model_dir(MODELS[0])
    j = json.load(open(os.path.join(base, "tokenizer.json"), encoding="utf-8"))
    edit(j)
    d = tmp_path / "m"
    d.mkdir()
    json.dump(j, open(d / "tokenizer.json", "w", encoding="utf-8"))
    return str(d)


REFUSALS = [
    (lambda j: j.update(pre_tokenizer={"type": "Whitespace"}), "pre_tokenizer type 'Whitespace' is not supported"),
    (lambda j: j.update(normalizer={"type": "NFKC"}), "normalizer type 'NFKC' is not supported"),
    (lambda j: j["model"].update(type="WordPiece"), "model type 'WordPiece' is not supported"),
    (lambda j: j["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\w+"),
     "pre_tokenizer Split regex '\\w+' is not supported"),
    (lambda j: j["added_tokens"][0].update(single_word=True), "single_word is not supported"),
    (lambda j: j.update(truncation={"max_length": 8}), "\"truncation\" is set"),
    (lambda j: j.update(post_processor={"type": "RobertaProcessing"}), "post_processor type 'RobertaProcessing'"),
    (lambda j: j.update(decoder={"type": "WordPiece"}), "decoder type 'WordPiece' is not supported"),
    (lambda j: j["model"].update(dropout=0.1), "model.dropout 0.1 is not supported"),
    (lambda j: j["model"]["merges"].append(["zzzq", "qqqz"]), "is not in the vocab"),
]


@pytest.mark.parametrize("edit,message", REFUSALS)
def test_unsupported_components_are_refused_by_name(tmp_path, edit, message):
    d = _edited(tmp_path, edit)
    (tmp_path / "in.jsonl").write_text('{"text": "hi"}\n')
    r = tok("--model", d, "--input", str(tmp_path / "in.jsonl"))
    err = r.stderr.decode()
    assert r.returncode == 1 and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_missing_tokenizer_json_names_what_was_looked_for(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"\x0a\x00")
    (tmp_path / "in.jsonl").write_text('{"text": "hi"}\n')
    r = tok("--model", str(tmp_path), "--input", str(tmp_path / "in.jsonl"))
    err = r.stderr.decode()
    assert r.returncode == 1
    assert f"looked for {tmp_path}/tokenizer.json" in err and "tokenizer.model" in err, err


def test_bad_lines_and_ids(tmp_path):
    model = model_dir(MODELS[0])
    (tmp_path / "a.jsonl").write_text('{"text": "ok"}\n{"txt": "no"}\n')
    r = tok("--model", model, "--input", str(tmp_path / "a.jsonl"))
    assert r.returncode == 1 and b'a.jsonl:2: expected a JSON object with a string "text"' in r.stderr
    (tmp_path / "b.jsonl").write_text("[1, 2, 99999999]\n")
    r = tok("--model", model, "--input", str(tmp_path / "b.jsonl"), "--decode")
    assert r.returncode == 1 and b"id 99999999 at position 2 is not in the vocabulary" in r.stderr
    r = tok("--model", model)
    assert r.returncode == 2 and b"--input FILE" in r.stderr


def _mutations(j, rng, count):
    """tokenizer.json variants with one value somewhere replaced by a value of another type"""
    paths = []

    def walk(node, path, depth):
        if depth > 4:
            return
        if isinstance(node, dict):
            for k, v in list(node.items())[:40]:
                paths.append(path + [k])
                walk(v, path + [k], depth + 1)
        elif isinstance(node, list):
            for i, v in enumerate(node[:6]):
                paths.append(path + [i])
                walk(v, path + [i], depth + 1)
    walk(j, [], 0)
    for _ in range(count):
        p = rng.choice(paths)
        m = json.loads(json.dumps(j))
        node = m
        for k in p[:-1]:
            node = node[k]
        node[p[-1]] = rng.choice([7, -1, 1e12, "x", "", None, [], {}, [1, 2], {"type": "x"}, True])
        yield p, m


def test_damaged_tokenizer_json_never_crashes(tmp_path):
    import random
    base = model_dir(MODELS[1])
    raw = open(os.path.join(base, "tokenizer.json"), "rb").read()
    j = json.loads(raw)
    (tmp_path / "in.jsonl").write_text('{"text": "Hello <s> world 123 日本"}\n')
    rng = random.Random(4)
    cases = [(f"truncated at {k}", raw[:k]) for k in sorted(rng.sample(range(1, len(raw)), 15))]
    cases += [(f"{p} changed", json.dumps(m).encode()) for p, m in _mutations(j, rng, 60)]
    for what, content in cases:
        (tmp_path / "tokenizer.json").write_bytes(content)
        r = tok("--model", str(tmp_path), "--input", str(tmp_path / "in.jsonl"))
        assert r.returncode in (0, 1), f"{what}: exit {r.returncode} {r.stderr[-300:]!r}"
        if r.returncode:
            lines = r.stderr.decode().strip().splitlines()
            assert len(lines) == 1 and "tokenizer.json" in lines[0], f"{what}: {lines}"


def test_utf8_bom_on_the_first_line_is_ignored(tmp_path):
    model = model_dir(MODELS[0])
    (tmp_path / "bom.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "hi there"}\n{"text": "\xef\xbb\xbfkept"}\n')
    r = tok("--model", model, "--input", str(tmp_path / "bom.jsonl"))
    hf = tokenizers.Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    assert r.returncode == 0, r.stderr
    assert [json.loads(l) for l in r.stdout.decode().splitlines()] == [hf.encode("hi there").ids,
                                                                      hf.encode("\ufeffkept").ids]
