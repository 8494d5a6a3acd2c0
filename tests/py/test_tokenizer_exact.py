# SPDX-License-Identifier: MIT
"""qdist tokenize must give exactly the ids of the `tokenizers` library, and decode to its text.

Tokenizers: every tokenizer.json under the repo's fixtures/ (pycode-16m, stories260K-hf), plus the ones
tok_builders.py trains (GPT-2 regex, Llama-3 regex with ignore_merges and lstrip/rstrip added
token, Qwen2 regex with NFC, SentencePiece Metaspace). Corpus: tok_corpus.py (>= 2,000 documents).
"""
import glob
import json
import os

import pytest
import tokenizers

import tok_builders
import tok_corpus
from qdtest import qdist


def _fixture_tokenizers():
    found = sorted(glob.glob(os.path.join(tok_corpus.FIX, "*", "tokenizer.json")))
    assert {"pycode-16m", "stories260K-hf"} <= {os.path.basename(os.path.dirname(p)) for p in found}, found
    return {os.path.basename(os.path.dirname(p)): p for p in found}


CASES = sorted(_fixture_tokenizers()) + sorted(tok_builders.BUILDERS)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    docs = tok_corpus.build_corpus()
    assert len(docs) >= 2000
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    tok_corpus.write_jsonl(docs, str(path))
    return docs, str(path)


def _tokenizer_path(name, docs, tmp_path):
    fixtures = _fixture_tokenizers()
    if name in fixtures:
        return fixtures[name]
    return tok_builders.BUILDERS[name](docs[::5], str(tmp_path / "tokenizer.json"))


def _run(args):
    return qdist("tokenize", *args)


@pytest.mark.parametrize("name", CASES)
def test_encode_decode_exact(name, corpus, tmp_path):
    docs, cpath = corpus
    tpath = _tokenizer_path(name, docs, tmp_path)
    hf = tokenizers.Tokenizer.from_file(tpath)
    out = tmp_path / "ids.jsonl"
    _run(["--model", tpath, "--input", cpath, "--output", str(out)])
    ours = [json.loads(l) for l in open(out)]
    want = [e.ids for e in hf.encode_batch(docs)]
    assert len(ours) == len(docs)
    bad = [i for i in range(len(docs)) if ours[i] != want[i]]
    print(f"{name}: {len(docs) - len(bad)}/{len(docs)} documents identical, "
          f"{sum(len(w) for w in want)} tokens")
    for i in bad[:3]:
        k = next((j for j, (a, b) in enumerate(zip(ours[i], want[i])) if a != b), min(len(ours[i]), len(want[i])))
        print(f"doc {i} {docs[i][:80]!r}: first difference at token {k}: ours {ours[i][k:k + 8]} "
              f"hf {want[i][k:k + 8]} ({hf.decode(want[i][k:k + 8], skip_special_tokens=False)!r})")
    assert not bad, f"{len(bad)} of {len(docs)} documents differ"

    # without special tokens
    plain = [e.ids for e in hf.encode_batch(docs[:300], add_special_tokens=False)]
    out2 = tmp_path / "plain.jsonl"
    tok_corpus.write_jsonl(docs[:300], str(tmp_path / "c300.jsonl"))
    _run(["--model", tpath, "--input", str(tmp_path / "c300.jsonl"), "--output", str(out2), "--no-special"])
    assert [json.loads(l) for l in open(out2)] == plain

    # decode: qdist's text for HF's ids equals HF's decode
    ids_file = tmp_path / "want.jsonl"
    with open(ids_file, "w") as f:
        for w in want:
            f.write(json.dumps(w) + "\n")
    dec = tmp_path / "dec.jsonl"
    _run(["--model", tpath, "--input", str(ids_file), "--output", str(dec), "--decode"])
    texts = [json.loads(l)["text"] for l in open(dec)]
    hf_texts = hf.decode_batch(want)
    bad = [i for i in range(len(docs)) if texts[i] != hf_texts[i]]
    for i in bad[:3]:
        print(f"decode doc {i}: ours {texts[i][:80]!r} hf {hf_texts[i][:80]!r}")
    assert not bad, f"decode: {len(bad)} of {len(docs)} documents differ"

    # decode keeping the special tokens
    with open(ids_file, "w") as f:
        for w in want[:300]:
            f.write(json.dumps(w) + "\n")
    _run(["--model", tpath, "--input", str(ids_file), "--output", str(dec), "--decode", "--keep-special"])
    texts = [json.loads(l)["text"] for l in open(dec)]
    assert texts == hf.decode_batch(want[:300], skip_special_tokens=False)


@pytest.mark.parametrize("name", sorted(tok_builders.SPLIT_LITERAL))
def test_split_literal_behaviours(name, corpus, tmp_path):
    docs = corpus[0][::4]
    tpath = tok_builders.SPLIT_LITERAL[name](docs, str(tmp_path / "tokenizer.json"))
    hf = tokenizers.Tokenizer.from_file(tpath)
    tok_corpus.write_jsonl(docs, str(tmp_path / "c.jsonl"))
    out = tmp_path / "ids.jsonl"
    _run(["--model", tpath, "--input", str(tmp_path / "c.jsonl"), "--output", str(out)])
    ours = [json.loads(l) for l in open(out)]
    want = [e.ids for e in hf.encode_batch(docs)]
    bad = [i for i in range(len(docs)) if ours[i] != want[i]]
    print(f"{name}: {len(docs) - len(bad)}/{len(docs)} documents identical")
    for i in bad[:2]:
        print(f"doc {i} {docs[i][:60]!r}: ours {ours[i][:12]} hf {want[i][:12]}")
    assert not bad
