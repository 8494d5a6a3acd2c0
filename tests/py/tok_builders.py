# SPDX-License-Identifier: MIT
"""Tokenizers the tests train with the `tokenizers` library, one per family qdist claims to support.

Each is a small BPE trained on part of the test corpus, then saved as tokenizer.json and adjusted
the way released models' files are (Llama-3's ignore_merges, merges written as "a b" strings in
older files, special tokens with lstrip/rstrip and normalized flags).
"""
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
            r"\s*[\r\n]+|\s+(?!\S)|\s+")


O200K_RE = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
             r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
             r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


TEKKEN_RE = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
             r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
             r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _train(tok, docs, vocab, specials, byte_level=True):
    kw = dict(vocab_size=vocab, special_tokens=specials, show_progress=False)
    if byte_level:
        kw["initial_alphabet"] = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(docs, trainers.BpeTrainer(**kw))
    return tok


def _save(tok, path, edit=None):
    tok.save(path)
    if edit:
        j = json.load(open(path, encoding="utf-8"))
        edit(j)
        json.dump(j, open(path, "w", encoding="utf-8"), ensure_ascii=False)
    return path


def gpt2(docs, path, prefix_space=False):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    _train(tok, docs, 3000, ["<|endoftext|>"])

    def edit(j):  # the older "a b" form of merges
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    return _save(tok, path, edit)


def llama3(docs, path):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    _train(tok, docs, 4000, ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    from tokenizers import AddedToken
    tok.add_tokens([AddedToken("<|reserved|>", lstrip=True, rstrip=True, special=False, normalized=False)])
    return _save(tok, path)


def starcoder(docs, path):
    """Digits(individual_digits) then the GPT-2 ByteLevel split, as StarCoder-family code models do."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    _train(tok, docs, 3000, ["<|endoftext|>", "<fim_prefix>", "<fim_middle>"])
    return _save(tok, path)


def digit_runs(docs, path):
    """Digits without individual_digits (contiguous runs) before the Llama-3 split."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    _train(tok, docs, 2000, ["<|endoftext|>"])
    return _save(tok, path)


def o200k(docs, path, regex=O200K_RE):
    """GPT-4o's split (tiktoken o200k_base; Phi-4-mini's tokenizer.json), or Mistral's Tekken one."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    _train(tok, docs, 4000, ["<|endoftext|>"])
    return _save(tok, path)


def qwen2(docs, path):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    _train(tok, docs, 4000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    from tokenizers import AddedToken
    tok.add_tokens([AddedToken("déjà", normalized=True, special=False)])
    return _save(tok, path)


def metaspace(docs, path, scheme="first", split=False):
    """SentencePiece style with the Metaspace pre-tokenizer (Llama / Mistral files with legacy=false)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme=scheme),
                                     decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    _train(tok, docs, 1500, specials, byte_level=False)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])

    def edit(j):  # byte tokens are ordinary vocab entries in converted SentencePiece files
        j["added_tokens"] = [a for a in j["added_tokens"] if not a["content"].startswith("<0x")]
    return _save(tok, path, edit)


def split_literal(behavior, invert=False, pattern=" "):
    """SentencePiece-style BPE behind Split with a literal pattern (Gemma's files split on " ")."""
    def build(docs, path):
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Split(pattern, behavior=behavior, invert=invert)
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
        _train(tok, docs, 1200, ["<unk>", "<bos>"] + ["<0x%02X>" % b for b in range(256)], byte_level=False)

        def edit(j):
            j["added_tokens"] = [a for a in j["added_tokens"] if not a["content"].startswith("<0x")]
        return _save(tok, path, edit)
    return build


# behaviours of Split with a literal, checked on a smaller corpus (tests/py/test_tokenizer_exact.py)
SPLIT_LITERAL = {
    "split-merged-with-previous": split_literal("merged_with_previous"),
    "split-merged-with-next": split_literal("merged_with_next"),
    "split-removed": split_literal("removed"),
    "split-isolated": split_literal("isolated", pattern="e"),
    "split-contiguous": split_literal("contiguous"),
    "split-inverted": split_literal("merged_with_next", invert=True, pattern="a"),
}

BUILDERS = {
    "built-gpt2": gpt2,
    "built-gpt2-prefix-space": lambda docs, path: gpt2(docs, path, prefix_space=True),
    "built-llama3": llama3,
    "built-qwen2-nfc": qwen2,
    "built-o200k": o200k,
    "built-tekken": lambda docs, path: o200k(docs, path, regex=TEKKEN_RE),
    "built-starcoder-digits": starcoder,
    "built-digit-runs": digit_runs,
    "built-metaspace": metaspace,
    "built-metaspace-always-split": lambda docs, path: metaspace(docs, path, scheme="always", split=True),
}
