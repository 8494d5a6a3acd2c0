# SPDX-License-Identifier: MIT
"""The compressed-tensors export loaded by the client users run: transformers + compressed-tensors (CPU).

Reference: the source model in transformers (float32) with every quantized Linear's weight replaced by
the fake-quant directory's dequantised .weight. The export's logits on a fixed input must match it
(relative error < 1e-2), and the export must generate text. Asymmetric exports are also loaded with
dequantize=True, and the weights compressed-tensors decompresses must equal the fake .weight.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import export_fakegen as fg  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("compressed_tensors")

QDIST = os.environ.get("QDIST_BIN", "")
REPO = os.environ.get("QD_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
FIX = os.path.join(REPO, "fixtures")  # in the repository: a missing file is a failure
STORIES = os.path.join(FIX, "stories260K-hf")

pytestmark = [
    pytest.mark.skipif(not QDIST or not os.path.exists(QDIST), reason="QDIST_BIN not set or missing"),
]

IDS = [1, 403, 407, 261, 378, 285, 434, 344, 261, 501, 428, 287, 306, 375, 268, 314]


def reference_logits(src, fake):
    m = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    t = fg.read_st(os.path.join(fake, "model.safetensors"))
    n = 0
    with torch.no_grad():
        for name, mod in m.named_modules():
            if name + ".qd_codes" in t:
                mod.weight.copy_(torch.from_numpy(t[name + ".weight"][1]))
                n += 1
        assert n > 0
        return m(torch.tensor([IDS])).logits[0].numpy(), t


def export(fake, out, *extra):
    r = subprocess.run([QDIST, "export", "--input", fake, "--output", out, "--format", "compressed-tensors", *extra],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


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
