# SPDX-License-Identifier: MIT
"""The compressed-tensors export loaded by the client users run: transformers + compressed-tensors (CPU).

Reference: the source model in transformers (float32) with every quantized Linear's weight replaced by
the fake-quant directory's dequantised .weight. The export's logits on a fixed input must match it
(relative error < 1e-2), and the export must generate text. Asymmetric exports are also loaded with
dequantize=True, and the weights compressed-tensors decompresses must equal the fake .weight.
"""
import compressed_tensors  # noqa: F401  (transformers loads the export through it)
import numpy as np
import pytest
import torch
import transformers

import export_fakegen as fg
from qdtest import IDS, STORIES, qdist
from qdtest import fake_quant_logits as reference_logits
from qdtest import rel as rel_err


def export(fake, out, *extra):
    qdist("export", "--input", fake, "--output", out, "--format", "compressed-tensors", *extra, timeout=120)


CASES = [
    ("stories-w4-sym", "stories", dict(bits=4, group_size=32, sym=True,
                                       overrides={"mlp.down_proj": {"group_size": -1}})),
    ("t128-w4-sym", "t128", dict(bits=4, group_size=32, sym=True)),
    ("t128-w8-chan", "t128", dict(bits=8, group_size=-1, sym=True)),
    ("t128-w4-asym", "t128", dict(bits=4, group_size=64, sym=False)),
    ("t128b-w4-asym", "t128b", dict(bits=4, group_size=64, sym=False, scale_round=fg.bf16_round)),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"stories": STORIES,
            "t128": fg.make_tiny128(STORIES, str(d / "t128")),
            "t128b": fg.make_tiny128(STORIES, str(d / "t128b"), dtype=fg.BF16)}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_transformers_loads_compressed_tensors(case, models, tmp_path):
    name, model, scheme = case
    src = models[model]
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    fg.make_fake(src, fake, **scheme)
    export(fake, out)
    ref, t = reference_logits(src, fake)
    if scheme["sym"]:
        # the default path: the model stays compressed and decompresses on the fly
        m = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    else:
        # transformers 5 + compressed-tensors 0.20 build the compressed (meta) model with an UNPACKED
        # zero point, so their default path refuses every asymmetric pack-quantized checkpoint; the
        # dequantize path reads the packed zero point as the format defines it
        cfg = transformers.utils.quantization_config.CompressedTensorsConfig(run_compressed=False)
        m = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, quantization_config=cfg)
        # bf16 models: compressed-tensors dequantises in the scale dtype; (q - z) * s is exact in fp32,
        # so its bf16 result is the fp32 fake weight rounded once to bf16
        rnd = fg.bf16_round if model == "t128b" else (lambda x: x)
        for mod_name, mod in m.named_modules():
            if mod_name + ".qd_codes" in t:
                assert np.array_equal(mod.weight.detach().numpy(), rnd(t[mod_name + ".weight"][1])), mod_name
    with torch.no_grad():
        got = m(torch.tensor([IDS])).logits[0].numpy()
    err = rel_err(got, ref)
    assert err < 1e-2, err
    gen = m.generate(torch.tensor([IDS[:4]]), max_new_tokens=12, do_sample=False)
    assert gen.shape[1] == 16
    tok = transformers.AutoTokenizer.from_pretrained(out)
    text = tok.decode(gen[0][4:])
    assert len(text.strip()) > 0
    print(name, "rel err", err, "text:", repr(text))
