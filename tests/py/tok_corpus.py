# SPDX-License-Identifier: MIT
"""The mixed corpus the tokenizer tests encode (>= 2,000 documents, deterministic).

English prose (WikiText-2 lines, C4 documents), source code (this repo's C files and Python's own
standard library), and synthetic documents for the hard cases of the split regexes: CJK, emoji
(ZWJ sequences, skin tones, flags), combining marks (decomposed Latin, Vietnamese, Devanagari,
Hebrew points), white-space runs, tabs, CRLF, Unicode spaces, long digit runs, contractions in
upper, lower and mixed case. The real text comes from the repository's fixtures/ (a missing file
is an error, never a silently smaller corpus).
"""
import glob
import json
import os
import random

import qdtest

REPO, FIX = str(qdtest.REPO), str(qdtest.FIX)

PIECES = [
    "日本語のテキストです。", "中文文本，包括标点符号！", "한국어 문장입니다.", "繁體中文測試",
    "🎉", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "❤️", "🙂🙃", "e\u0301", "a\u0308\u0304", "Tiếng Việt có dấu",
    "Vie\u0302\u0323t", "देवनागरी लिपि", "שָׁלוֹם", "مرحبا بالعالم", "Ελληνικά", "Кириллица", "ﬁ ligature",
    "\u00a0", "\u3000", "\u2028", "\u200b", "\t", "\t\t", "\r\n", "\n\n\n", "   ", "        ", " \n ",
    "1234567890123", "3.14159265358979", "0x7FFFFFFF", "1,000,000", "٣٤٥", "Ⅻ", "½",
    "don't", "DON'T", "I'm", "I'M", "we're", "WE'RE", "they've", "THEY'VE", "you'll", "YOU'LL", "he'd",
    "HE'D", "it's", "IT'S", "It'S", "'s", "'S", "'ll", "'Ll", "’s", "isn’t", "'ſ", "''", "'''",
    "<|endoftext|>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "<|eot_id|>",
    "<|begin_of_text|>", "<|reserved|>", " <|reserved|> ", "déjà", "de\u0301ja\u0300", "<0x41>", "▁", "Ġ", "Hello", "world", "  leading", "trailing  ", "snake_case",
    "camelCase", "x+=1;", "->", "::", "#include", "...", "—", "«quote»", "\"quoted\"", "a\u0000b"[0:1],
    "McDonald's", "HTTPServer", "iPhone", "XMLHttpRequest", "ABCdef'S", "ǅemal", "ʰʲᵃ", "A\u0301B\u0301c",
    "ÅNGSTRÖM", "Straße", "日本Abc", "path/to/file", "x /\n/", ") /\r\n", "ΣΊΣΥΦΟΣ", "ǈubljana",
    "$100", "100%", "e.g.", "U.S.A.", "C++", "@-@", "\\n", "\u0085", "\u180e", "\ufeff", "\U0001F600",
    "\U00020000", "\ue000", "\U000e0041", "\u0378",
]


def _random_codepoints(rng, n):
    """Documents of code points drawn from all of Unicode's planes in use: checks the class tables."""
    docs = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(20, 200)):
            r = rng.random()
            if r < 0.3:
                cp = rng.randint(0x20, 0x7E)
            elif r < 0.5:
                cp = rng.choice([0x20, 0x0A, 0x09, 0x27, 0x0D])
            elif r < 0.9:
                cp = rng.randint(0xA0, 0xFFFD)
            else:
                cp = rng.randint(0x10000, 0x3134F)
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0x41
            chars.append(chr(cp))
        docs.append("".join(chars))
    return docs


def _synthetic(rng, n):
    docs = []
    for _ in range(n):
        k = rng.randint(1, 40)
        parts = []
        for _ in range(k):
            r = rng.random()
            if r < 0.6:
                parts.append(rng.choice(PIECES))
            elif r < 0.8:
                parts.append(" " * rng.randint(0, 3))
            else:
                parts.append(rng.choice(["\t", "\n", "\r\n", "\r", "  \n", "\n  ", " "]))
        docs.append("".join(parts))
    return docs


def _chunks(text, lines_per_doc, rng, limit):
    lines = text.splitlines(keepends=True)
    out = []
    i = 0
    while i < len(lines) and len(out) < limit:
        n = rng.randint(lines_per_doc // 2, lines_per_doc)
        out.append("".join(lines[i:i + n]))
        i += n
    return out


def build_corpus():
    rng = random.Random(20261123)
    docs = []
    wiki = open(os.path.join(FIX, "wikitext-2-raw", "wiki.test.raw"), "rb").read()
    lines = [l for l in wiki.decode("utf-8").split("\n") if l.strip()]
    docs += lines[:500]
    # the upstream file's CRLF line ends (fixtures/SOURCES.md: restoring them gives its exact bytes)
    raw = wiki.replace(b"\n", b"\r\n")[:200000].decode("utf-8", "replace")
    docs += _chunks(raw, 6, rng, 50)
    with open(os.path.join(FIX, "c4", "c4_validation_sample.jsonl"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= 300:
                break
            docs.append(json.loads(line)["text"])
    code = []
    for p in sorted(glob.glob(os.path.join(REPO, "src", "**", "*.[ch]"), recursive=True)):
        if "unicode-tables" in p:
            continue
        code.append(open(p, encoding="utf-8", errors="replace").read())
    stdlib = os.path.dirname(os.__file__)
    for name in ["json/decoder.py", "textwrap.py", "string.py", "difflib.py", "argparse.py", "heapq.py",
                 "shlex.py", "fractions.py", "statistics.py", "calendar.py", "pprint.py", "tokenize.py"]:
        p = os.path.join(stdlib, name)
        if os.path.exists(p):
            code.append(open(p, encoding="utf-8").read())
    for text in code:
        docs += _chunks(text, 40, rng, 60)
    docs = docs[:1500]
    docs += _synthetic(rng, max(700, 2100 - len(docs)))
    docs += _random_codepoints(rng, 300)
    docs.append("")
    docs.append(" ")
    docs.append("x" * 5000)
    docs.append("9" * 1001)
    docs.append(" " * 300 + "\n" * 10 + "\t" * 7)
    return docs


def write_jsonl(docs, path):
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
