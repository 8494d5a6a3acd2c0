# SPDX-License-Identifier: MIT
"""GPTQ (v1, v2) and AWQ exports loaded by transformers through GPT-QModel + optimum on CPU.

Skipped unless `gptqmodel` and `optimum` import (they are not in tests/requirements.txt: gptqmodel is
a source distribution that takes ~10 minutes to build; `pip install gptqmodel optimum` in a venv with
--system-site-packages works on CPU). Reference as in test_export_transformers.py: the source model
with the fake-quant weights swapped in; logits must agree to a relative error below 1e-2 and the
model must generate.
"""
import numpy as np
import pytest

import export_fakegen as fg
from qdtest import IDS, STORIES, qdist
from qdtest import fake_quant_logits

# first: skip before the slow torch import. The one documented optional skip of the suite.
OPTIONAL = "not installed (optional heavy build: docs/formats.md, `pip install gptqmodel optimum`)"
pytest.importorskip("gptqmodel", reason="GPTQModel " + OPTIONAL)
pytest.importorskip("optimum", reason="optimum " + OPTIONAL)
import torch  # noqa: E402  (required: tests/requirements.txt)
import transformers  # noqa: E402

CASES = [
    ("gptq-w4-sym", "t128", "gptq", dict(bits=4, group_size=32, sym=True)),
    ("gptq-w4-asym-desc", "t128", "gptq", dict(bits=4, group_size=32, sym=False, act_order=True, clamp_z1=True)),
    ("gptq_v2-w4-asym", "t128", "gptq_v2", dict(bits=4, group_size=64, sym=False)),
    ("gptq-w8-chan", "t128", "gptq", dict(bits=8, group_size=-1, sym=True)),
    ("gptq-w3", "t128", "gptq", dict(bits=3, group_size=32, sym=True)),
    # per-module bits/group overrides ("dynamic"): transformers' GPTQ loader (optimum) ignores "dynamic",
    # so this one goes through GPTQModel's own loader, which honours it (as vLLM does)
    ("gptq-mixed-native", "t128", "gptq_v2", dict(bits=4, group_size=32, sym=False, overrides={
        "self_attn.q_proj": {"bits": 8}, "mlp.down_proj": {"group_size": 64}, "self_attn.v_proj": None})),
    ("gptq-stories", "stories", "gptq", dict(bits=4, group_size=32, sym=True,
                                             overrides={"mlp.down_proj": {"group_size": -1}})),
    ("awq-w4", "t128", "awq", dict(bits=4, group_size=32, sym=False)),
    ("awq-stories", "stories", "awq", dict(bits=4, group_size=32, sym=False, overrides={"mlp.down_proj": None})),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"stories": STORIES, "t128": fg.make_tiny128(STORIES, str(d / "t128"))}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_gptqmodel_loads_export(case, models, tmp_path):
    name, model, fmt, scheme = case
    src = models[model]
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    fg.make_fake(src, fake, **scheme)
    qdist("export", "--input", fake, "--output", out, "--format", fmt, timeout=120)
    ref, _ = fake_quant_logits(src, fake)
    if "native" in name:
        from gptqmodel import BACKEND, GPTQModel
        m = GPTQModel.load(out, device="cpu", dtype=torch.float16, backend=BACKEND.TORCH).model
        assert type(m.model.layers[0].self_attn.v_proj).__name__ == "Linear"  # "-:" honoured
        assert m.model.layers[0].self_attn.q_proj.bits == 8 and m.model.layers[0].mlp.down_proj.group_size == 64
    else:
        m = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, device_map="cpu")
    kinds = {type(mod).__name__ for mod in m.modules()}
    assert any("Linear" in k and k != "Linear" for k in kinds), kinds  # quantized kernels in use
    with torch.no_grad():
        got = m(torch.tensor([IDS])).logits[0].float().numpy()
    err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    assert err < 1e-2, err
    gen = m.generate(torch.tensor([IDS[:4]]), max_new_tokens=8, do_sample=False)
    assert gen.shape[1] == 12
    print(name, "rel err", err, sorted(kinds))
