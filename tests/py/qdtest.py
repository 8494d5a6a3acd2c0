# SPDX-License-Identifier: MIT
"""qdtest.py - what the tests under tests/py share: where things are (the environment tests/CMakeLists.txt
gives each test: QDIST_BIN, QD_REPO, QD_BUILD and the Open MPI variables), running qdist and mpirun,
reading checkpoints back, and tiny models built with transformers.

The suite's rule: a fixture, a built tool or a package of tests/requirements.txt that is missing is a
FAILURE (setup.sh installs and builds them all), never a skip; a skip is only for absent hardware (a GPU)
and the documented optional GPTQModel. So this module imports its packages plainly and `need` asserts.
"""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(os.environ.get("QD_REPO", Path(__file__).resolve().parents[2]))
BUILD = Path(os.environ.get("QD_BUILD", REPO / "build"))
QDIST = os.environ.get("QDIST_BIN", str(BUILD / "qdist"))

# the fixtures, inside the repository
FIX = REPO / "fixtures"
STORIES = FIX / "stories260K-hf"
PYCODE = FIX / "pycode-16m"
WIKI = FIX / "wikitext-2-raw" / "wiki.test.raw"
C4_TRAIN = FIX / "c4" / "c4_train_sample.jsonl"
C4_VALID = FIX / "c4" / "c4_validation_sample.jsonl"
TOKFILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Open MPI as root on an oversubscribed 2-core machine (the values tests/CMakeLists.txt sets)
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")

# 16 token ids of the stories260K vocabulary: the prompt the transformers comparisons feed
IDS = [1, 403, 407, 261, 378, 285, 434, 344, 261, 501, 428, 287, 306, 375, 268, 314]


def need(*paths):
    """fixtures of the repository: absent means a broken checkout, so fail, never skip"""
    for p in paths:
        assert os.path.exists(p), f"fixture {p} missing from the repository"


def tool(*parts):
    """the path of a test program CMake builds under QD_BUILD (e.g. tool("tests", "core-test-fp8")); fails when
    it is not built"""
    p = BUILD.joinpath(*parts)
    assert p.exists(), f"{p} is not built (cmake --build {BUILD})"
    return str(p)


def need_mpirun():
    assert shutil.which("mpirun"), "mpirun not installed (setup.sh installs openmpi-bin)"


def qdist(*args, ok=True, env=None, timeout=600):
    """runs QDIST_BIN with args (converted to str); ok: assert it exits 0, showing its stderr"""
    assert os.path.exists(QDIST), f"qdist binary {QDIST} missing (QDIST_BIN; cmake --build {BUILD})"
    r = subprocess.run([QDIST, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def mpirun(np, *args, ok=True, env=None, timeout=600, pass_env=None):
    """qdist with args on np MPI ranks (np 1: qdist alone, no launcher) with MPI_ENV plus env (a value None
    unsets the variable); the variables pass_env names (default: those env sets to other values than this
    process has) reach every rank (mpirun -x). ok: assert it exits 0"""
    env = env or {}
    if pass_env is None:
        pass_env = [k for k, v in env.items() if os.environ.get(k) != v]
    cmd = ["mpirun", "--oversubscribe", "-n", str(np)] if np > 1 else []
    for k in [k for k in pass_env if env.get(k) is not None]:
        if np > 1:
            cmd += ["-x", k]
    assert os.path.exists(QDIST), f"qdist binary {QDIST} missing (QDIST_BIN; cmake --build {BUILD})"
    run_env = {k: v for k, v in {**MPI_ENV, **env}.items() if v is not None}
    r = subprocess.run(cmd + [QDIST, *map(str, args)], env=run_env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def checkpoint_bytes(d):
    """every file of a checkpoint directory but the run report (which holds timings), by name"""
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.name != "qdist_report.json"}


def tensors(d, lib="torch"):
    """every tensor of the *.safetensors files of d, read by the safetensors package (torch or numpy)"""
    if lib == "torch":
        from safetensors.torch import load_file
    else:
        from safetensors.numpy import load_file
    t = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            t.update(load_file(os.path.join(d, f)))
    return t


def eval_ppl(d, data, seqlen=128, windows=8):
    """`qdist eval --json` perplexity of model d on text file data (CPU backend)"""
    import json
    r = qdist("eval", "--model", d, "--data", data, "--seqlen", seqlen, "--max-windows", windows, "--backend", "cpu",
              "--json", "--quiet")
    return json.loads(r.stdout.strip().splitlines()[-1])["ppl"]


def rel(a, b):
    """relative L2 error of a against the reference b"""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def text_file(path, chars, src=WIKI):
    """path holding the first chars characters of src (a calibration or evaluation text)"""
    path = Path(path)
    path.write_text(Path(src).read_text(encoding="utf-8")[:chars], encoding="utf-8")
    return path


def copy_tokenizer(out):
    """the stories260K tokenizer files (vocabulary 512) into directory out"""
    for f in TOKFILES:
        shutil.copy(STORIES / f, out)


def save_tiny(model, out):
    """a transformers model built in a test, saved to out with the stories260K tokenizer"""
    model.save_pretrained(out)
    copy_tokenizer(out)
    return out


def hf_logits(path, ids, **kw):
    """transformers' fp32 logits of model path for one sequence of token ids, as float64 numpy"""
    import torch
    import transformers
    m = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **kw).eval()
    with torch.no_grad():
        return m(input_ids=torch.tensor(ids)[None]).logits[0].double().numpy()


def qdist_logits(path, tmp, name):
    """`qdist eval --dump-logits` over one 64-token window of the wikitext fixture: (ids, logits) as numpy"""
    from safetensors.numpy import load_file
    data = text_file(Path(tmp) / "eval.txt", 4000)
    qdist("eval", "--model", path, "--data", data, "--seqlen", 64, "--max-windows", 1, "--dump-logits",
          Path(tmp) / name, "--quiet")
    d = load_file(str(Path(tmp) / name / "logits.safetensors"))
    return d["ids"].astype(np.int64), d["logits"].astype(np.float64)


def fake_quant_logits(src, fake):
    """transformers' fp32 logits for IDS of model src holding the fake-quant weights of directory fake (each
    Linear with qd_codes gets fake's .weight), and fake's tensors as export_fakegen.read_st gives them"""
    import torch
    import transformers

    import export_fakegen as fg
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


def ct_quant_config(out):
    """the quantization_config of compressed-tensors export out, with the checks every scheme shares: compressed,
    lm_head ignored, each group a QuantizationScheme the library accepts, "format" the groups' one format or
    mixed-precision; returns (quantization_config, its groups)"""
    import json

    from compressed_tensors.quantization import QuantizationScheme
    q = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    assert q["quant_method"] == "compressed-tensors" and q["quantization_status"] == "compressed"
    assert q["ignore"] == ["lm_head"]
    groups = list(q["config_groups"].values())
    for g in groups:
        QuantizationScheme.model_validate({k: v for k, v in g.items() if k != "format"})  # the library accepts it
    formats = {g["format"] for g in groups}
    assert q["format"] == (formats.pop() if len(formats) == 1 else "mixed-precision")
    return q, groups


def ct_scheme_of(q, fmt, prefix):
    """the QuantizationScheme of the one config group of format fmt that targets Linear prefix (the only group,
    or one naming it by an exact re: target)"""
    from compressed_tensors.quantization import QuantizationScheme
    groups = list(q["config_groups"].values())
    g = [g for g in groups if g["format"] == fmt and (len(groups) == 1 or any(
        x == "re:^" + prefix.replace(".", "\\.") + "$" for x in g["targets"]))]
    assert len(g) == 1, prefix
    return QuantizationScheme.model_validate({k: v for k, v in g[0].items() if k != "format"})


def logits_match_and_generate(m, ref, tol):
    """transformers model m (an export loaded back) on IDS: its logits within relative error tol of ref, and
    greedy generation adds 6 tokens to IDS[:4]; returns the error"""
    import torch
    with torch.no_grad():
        got = m(torch.tensor([IDS])).logits[0].float().numpy()
    err = rel(got, ref)
    assert err < tol, err
    gen = m.generate(torch.tensor([IDS[:4]]), max_new_tokens=6, do_sample=False)
    assert gen.shape[1] == 10
    return err


def one_line_error(r, code, *needles):
    """qdist run r failed with exit status code and exactly one non-blank stderr line holding every needle"""
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == code and len(lines) == 1 and all(n in lines[0] for n in needles), r.stderr


def tiny_random(cls, cfg):
    """transformers model class cls built from cfg with seed 0, every matrix drawn from N(0, 0.1^2) (the init
    alone leaves tiny models near-degenerate)"""
    import torch
    torch.manual_seed(0)
    m = cls(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.1)
    return m


def forward_matches_transformers(src, tmp, label, tol=1e-5):
    """qdist's fp32 logits of model src over one window against transformers' (relative error <= tol)"""
    ids, ours = qdist_logits(src, tmp, "dump")
    ref = hf_logits(src, list(ids))[:-1]
    err = rel(ours, ref)
    print(label, "rel err", err)
    assert err <= tol
