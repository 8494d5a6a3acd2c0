"""The Python reference forward (tests/ref/qforward.py) against transformers' LlamaForCausalLM.

The reference is what test_ref_layer / test_ref_model use to produce calibration activations, so it
must itself agree with the library users run: logits of a 256-token wikitext sequence on
stories260K-hf, float32, relative error (max |diff| / max |ref|) < 1e-4.
"""
import os
import sys

import numpy as np
import pytest
import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
import qforward as qf  # noqa: E402
import qdtest as qt  # noqa: E402

FIX = str(qt.FIX)
MODEL, WIKI = str(qt.STORIES), str(qt.WIKI)


def _tokens(n):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    with open(WIKI, encoding="utf-8") as f:
        text = f.read(20000)
    return np.array(tok.encode(text).ids[:n], dtype=np.int64)


@pytest.fixture(scope="module")
def hf():
    m = transformers.LlamaForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32)
    m.eval()
    return torch, m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logits_match_transformers(hf, dtype):
    torch, m = hf
    ids = _tokens(256)
    assert len(ids) == 256
    with torch.no_grad():
        ref = m(torch.tensor(ids[None])).logits[0].double().numpy()
    cfg, w = qf.load_model_dir(MODEL)
    out = qf.logits(ids, w, cfg, dtype).astype(np.float64)
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    print(f"dtype={np.dtype(dtype).name} rel err {rel:.3e}")
    assert rel < 1e-4, rel


def test_batch_rows_independent(hf):
    """two rows in one batch give the same logits as each row alone (no cross-row attention)."""
    ids = _tokens(128).reshape(2, 64)
    cfg, w = qf.load_model_dir(MODEL)
    both = qf.logits(ids, w, cfg)
    for r in range(2):
        np.testing.assert_allclose(both[r], qf.logits(ids[r], w, cfg), rtol=0, atol=1e-10)


def test_perplexity_matches_transformers(hf):
    torch, m = hf
    seqlen = 128
    ids = _tokens(4 * seqlen + 17)
    cfg, w = qf.load_model_dir(MODEL)
    ppl, n = qf.perplexity(ids, w, cfg, seqlen, np.float32)
    assert n == 4 * seqlen
    nlls = []
    with torch.no_grad():
        for i in range(4):
            x = torch.tensor(ids[i * seqlen:(i + 1) * seqlen][None])
            nlls.append(m(x, labels=x).loss.double().item())
    ref = float(np.exp(np.mean(nlls)))
    print(f"ppl reference {ppl:.6f} transformers {ref:.6f}")
    assert abs(ppl - ref) / ref < 1e-5


def test_llama3_rope_scaling_matches_transformers():
    rs = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 64}
    hfcfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, vocab_size=97,
                                     max_position_embeddings=512, rope_theta=500000.0,
                                     rope_scaling=rs, tie_word_embeddings=False)
    torch.manual_seed(0)
    m = transformers.LlamaForCausalLM(hfcfg).eval()
    d = {k: v.detach().numpy().astype(np.float32) for k, v in m.state_dict().items()}
    cfgd = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 97,
            "rope_theta": 500000.0, "rope_scaling": rs, "rms_norm_eps": hfcfg.rms_norm_eps,
            "tie_word_embeddings": False}
    ids = np.random.default_rng(0).integers(0, 97, size=(1, 200))
    with torch.no_grad():
        ref = m(torch.tensor(ids)).logits.double().numpy()
    out = qf.logits(ids, d, qf.Config(cfgd), np.float64)
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    print(f"llama3 rope rel err {rel:.3e}")
    assert rel < 1e-4, rel


def test_logits_match_transformers_pycode16m():
    """the trained fixture (bf16 weights, llama3 rope via rope_parameters), float32 compute."""
    path = os.path.join(FIX, "pycode-16m")
    m = transformers.LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "eval.txt"), encoding="utf-8") as f:
        ids = np.array(tok.encode(f.read(20000)).ids[:256], dtype=np.int64)
    with torch.no_grad():
        ref = m(torch.tensor(ids[None])).logits[0].double().numpy()
    cfg, w = qf.load_model_dir(path)
    out = qf.logits(ids, w, cfg, np.float32).astype(np.float64)
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    print(f"pycode-16m rel err {rel:.3e}")
    assert rel < 1e-4, rel
