# SPDX-License-Identifier: MIT
"""GPTQ (v1, v2) and AWQ exports loaded by transformers through GPT-QModel + optimum on CPU.

Skipped unless `gptqmodel` and `optimum` import (they are not in tests/requirements.txt: gptqmodel is
a source distribution that takes ~10 minutes to build; `pip install gptqmodel optimum` in a venv with
--system-site-packages works on CPU). Reference as in test_export_transformers.py: the source model
with the fake-quant weights swapped in; logits must agree to a relative error below 1e-2 and the
model must generate.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import export_fakegen as fg  # noqa: E402

# first: skip before the slow torch import. The one documented optional skip of the suite.
OPTIONAL = "not installed (optional heavy build: docs/formats.md, `pip install gptqmodel optimum`)"
pytest.importorskip("gptqmodel", reason="GPTQModel " + OPTIONAL)
pytest.importorskip("optimum", reason="optimum " + OPTIONAL)
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

QDIST = os.environ.get("QDIST_BIN", "")
REPO = os.environ.get("QD_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
FIX = os.path.join(REPO, "fixtures")  # in the repository: a missing file is a failure
STORIES = os.path.join(FIX, "stories260K-hf")

pytestmark = [
    pytest.mark.skipif(not QDIST or not os.path.exists(QDIST), reason="QDIST_BIN not set or missing"),
]

IDS = [1, 403, 407, 261, 378, 285, 434, 344, 261, 501, 428, 287, 306, 375, 268, 314]

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


def reference_logits(src, fake):
    m = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    t = fg.read_st(os.path.join(fake, "model.safetensors"))
    with torch.no_grad():
        for name, mod in m.named_modules():
            if name + ".qd_codes" in t:
                mod.weight.copy_(torch.from_numpy(t[name + ".weight"][1]))
        return m(torch.tensor([IDS])).logits[0].numpy()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_gptqmodel_loads_export(case, models, tmp_path):
    name, model, fmt, scheme = case
    src = models[model]
    fake, out = str(tmp_path / "fake"), str(tmp_path / "out")
    fg.make_fake(src, fake, **scheme)
    r = subprocess.run([QDIST, "export", "--input", fake, "--output", out, "--format", fmt],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ref = reference_logits(src, fake)
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
