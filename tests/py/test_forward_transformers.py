# SPDX-License-Identifier: MIT
"""qdist's decoder forward against Hugging Face transformers itself (issue 5 item 1).

`qdist eval --dump-logits` writes the logits of its first window and the ids it tokenised. The same
ids go through transformers' LlamaForCausalLM on the CPU in float32 (the bf16 fixture's weights
upcast, so both sides compute the same function in fp32). ||qdist - hf|| / ||hf|| must be below 1e-3
over the whole [255, vocab] logit matrix, and the argmax token must agree almost everywhere."""
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

import qdtest as qt
from qdtest import PYCODE, STORIES, WIKI, qdist

CASES = {
    "stories260K": (STORIES, WIKI),
    "pycode-16m": (PYCODE, PYCODE / "eval.txt"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_match_transformers(name, tmp_path):
    model, text = CASES[name]
    qt.need(model, text)
    qdist("eval", "--model", model, "--data", text, "--seqlen", "256", "--max-windows", "1", "--dump-logits", tmp_path)
    dump = load_file(str(tmp_path / "logits.safetensors"))
    ids, ours = dump["ids"].astype(np.int64), dump["logits"].astype(np.float64)
    assert ids.shape == (256,) and ours.shape[0] == 255
    # the window starts with the tokenizer's BOS, as transformers' tokenizer(text) produces
    tok = transformers.AutoTokenizer.from_pretrained(str(model))
    head = tok(text.read_text(encoding="utf-8")[:20000]).input_ids[:256]
    assert list(ids) == head
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids)[None]).logits[0, :-1].double().numpy()
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    agree = (ours.argmax(-1) == ref.argmax(-1)).mean()
    print(f"{name}: rel err {rel:.2e}, argmax agreement {agree:.4f}")
    assert rel < 1e-3
    assert agree > 0.99
