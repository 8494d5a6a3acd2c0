# SPDX-License-Identifier: MIT
"""The calibration set (`qdist tokenize --calib` preview of what quantize uses), checked against the
`tokenizers` library and hashlib: the fingerprint is hashlib.sha256 of the ids as int32 LE; every
random window is a stretch of the HF encoding of one document long enough; concat mode is the HF
encodings of distinct documents laid end to end; chat lines are rendered like the published
templates (checked on the string level against jinja2 when it is installed)."""
import hashlib
import json
import os
import struct

import jinja2
import pytest
import tokenizers

from qdtest import need, qdist
from qdtest import C4_VALID as C4
from qdtest import PYCODE as MODEL


def preview(*args):
    r = qdist("tokenize", "--model", MODEL, *args)
    return json.loads(r.stdout), r.stderr


def sha(rows):
    return hashlib.sha256(b"".join(struct.pack("<%di" % len(r), *r) for r in rows)).hexdigest()


@pytest.fixture(scope="module")
def c4_docs():
    need(C4)
    need(MODEL)
    return [json.loads(l)["text"] for l in open(C4, encoding="utf-8")][:300]


@pytest.fixture(scope="module")
def hf():
    need(MODEL)
    return tokenizers.Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))


def test_random_windows_are_stretches_of_hf_encodings(c4_docs, hf, tmp_path):
    path = tmp_path / "c4.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for d in c4_docs:
            f.write(json.dumps({"text": d}) + "\n")
    out, _ = preview("--calib", str(path), "--nsamples", "32", "--seqlen", "256", "--seed", "5")
    encs = [e.ids for e in hf.encode_batch(c4_docs)]
    long_enough = [e for e in encs if len(e) >= 256]
    assert out["docs_read"] == len(c4_docs)
    assert out["docs_eligible"] == len(long_enough)
    assert out["tokens_read"] == sum(map(len, encs))
    assert out["sha256"] == sha(out["ids"])
    texts = [",".join(map(str, e)) + "," for e in long_enough]
    for row in out["ids"]:
        key = ",".join(map(str, row)) + ","
        assert any(key in t for t in texts), "a window is not a stretch of any document's HF encoding"
    again, _ = preview("--calib", str(path), "--nsamples", "32", "--seqlen", "256", "--seed", "5")
    other, _ = preview("--calib", str(path), "--nsamples", "32", "--seqlen", "256", "--seed", "6")
    assert again["sha256"] == out["sha256"] and other["sha256"] != out["sha256"]


def test_concat_is_whole_hf_documents_end_to_end(c4_docs, hf, tmp_path):
    docs = c4_docs[:120]
    path = tmp_path / "c4.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    out, _ = preview("--calib", str(path), "--nsamples", "16", "--seqlen", "512", "--seed", "1",
                     "--calib-mode", "concat")
    flat = [t for r in out["ids"] for t in r]
    assert len(flat) == 16 * 512 and out["sha256"] == sha(out["ids"])
    encs = {i: e.ids for i, e in enumerate(hf.encode_batch(docs))}
    pos, used = 0, []
    while pos < len(flat):
        match = [i for i, e in encs.items() if i not in used and flat[pos:pos + len(e)] == e[:len(flat) - pos]]
        assert match, f"tokens at {pos} start no unused document's HF encoding"
        used.append(match[0])
        pos += len(encs[match[0]])
    assert used != sorted(used), "documents were not shuffled"


def test_malformed_lines_warned_and_counted(tmp_path, hf):
    path = tmp_path / "mixed.jsonl"
    lines = ['{"text": "def f(x):\\n    return x * 2\\n" }', "{oops", '{"text": 3}', '[1, 2, 3, 4, 5, 6, 7, 8]', "", "[]"]
    path.write_text("\n".join(lines) + "\n")
    out, err = preview("--calib", str(path), "--nsamples", "2", "--seqlen", "4")
    assert out["skipped_lines"] == 3 and out["first_skipped_line"] == 2
    assert "skipped 3 malformed lines (first: line 2)" in err


@pytest.mark.parametrize("content,message", [
    (b"", "the file is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks binary"),
    (b'{"text": "short"}\n', "no document has the 64 tokens a random window needs"),
])
def test_bad_files_refused_with_one_line(tmp_path, content, message):
    need(MODEL)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    r = qdist("tokenize", "--model", MODEL, "--calib", path, "--seqlen", "64", ok=False)
    assert r.returncode == 1
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_chat_templates_match_jinja(tmp_path, hf):
    # the published templates (Qwen2-style ChatML without the default system line, Llama-3, Llama-2)
    templates = {
        "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}",
        "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}",
        "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    }
    convo = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Sum 2+2? "},
             {"role": "assistant", "content": "4\n"}, {"role": "user", "content": "Thanks"}]
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": convo}) + "\n")
    cfg = json.load(open(os.path.join(MODEL, "tokenizer_config.json")))
    for name, tpl in templates.items():
        text = jinja2.Template(tpl).render(messages=convo, bos_token=cfg.get("bos_token", "<s>"),
                                           eos_token=cfg.get("eos_token", "</s>"))
        want = hf.encode(text, add_special_tokens=False).ids
        out, _ = preview("--calib", str(path), "--nsamples", "1", "--seqlen", str(len(want)),
                         "--chat-template", name)
        assert out["ids"][0] == want, name


def test_plain_text_file_is_one_long_document(c4_docs, hf, tmp_path):
    text = "\n".join(c4_docs[:60]) + "\n"
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    out, _ = preview("--calib", str(path), "--nsamples", "8", "--seqlen", "128", "--seed", "3")
    enc = hf.encode(text).ids  # under 1 MiB: one piece, encoded as one tokenizer(text) call
    assert out["docs_read"] == 1 and out["tokens_read"] == len(enc)
    flat = "," + ",".join(map(str, enc)) + ","
    for row in out["ids"]:
        assert "," + ",".join(map(str, row)) + "," in flat
