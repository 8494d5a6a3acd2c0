# SPDX-License-Identifier: MIT
"""Data-parallel ranks (--parallel data, the default; issue 18), on real MPI ranks on this machine.

- --numerics exact: P = 1, 2, 3, 4 give byte-identical checkpoints (GPTQ, GPTQ with act-order, RTN, AWQ),
  also when some ranks hold no calibration sequence and the last chunk is short;
- default numerics: the same bytes run after run for a given P, and P = 1, 2, 4 agree in perplexity;
- a run killed on one rank, resumed with another P, gives the uninterrupted checkpoint (exact numerics);
- an injected failure on one rank ends the job quickly, naming rank and block;
- each block is staged by rank block % P; AWQ's statistics are reduced the same way;
- --schedule overlap without --parallel pipeline is a usage error.
"""
import json
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

import qdtest as qt
from qdtest import C4_TRAIN as C4
from qdtest import PYCODE, STORIES, checkpoint_bytes

qt.need(PYCODE, STORIES, C4)
qt.need_mpirun()
# pycode-16m, 7 sequences in chunks of 2 (128 tokens / 64): four slabs, the last one short
PY = ["--model", str(PYCODE), "--calib", str(PYCODE / "calib.jsonl"), "--nsamples", "7", "--seqlen", "64",
      "--chunk-tokens", "128", "--group-size", "64", "--quiet", "--progress", "none"]
# stories260K's MLP width (172) takes no group size that divides it: one group per row
ST = ["--model", str(STORIES), "--calib", str(C4), "--nsamples", "16", "--seqlen", "128", "--chunk-tokens", "512",
      "--group-size", "-1", "--quiet", "--progress", "none"]


def opts(base, **values):
    """base with the values of some options replaced (nsamples=4 replaces --nsamples' value)"""
    out = list(base)
    for k, v in values.items():
        i = out.index("--" + k.replace("_", "-"))
        out[i + 1] = str(v)
    return out


def quantize(out, np, args, env=None, timeout=300):
    return qt.mpirun(np, "quantize", "--output", out, *args, ok=False, env=env, timeout=timeout)


def run_ok(out, np, args, **kw):
    r = quantize(out, np, args, **kw)
    assert r.returncode == 0, r.stderr
    return checkpoint_bytes(out)


@pytest.mark.parametrize("name,base,extra,ranks", [
    ("gptq", PY, ["--method", "gptq"], [1, 2, 3, 4]),
    ("gptq-act-order", PY, ["--method", "gptq", "--act-order"], [1, 3]),
    ("rtn", ST, ["--method", "rtn"], [1, 2, 3, 4]),
    ("awq", PY, ["--method", "awq", "--format", "compressed-tensors"], [1, 2, 4]),
])
def test_exact_numerics_byte_identical_for_every_rank_count(tmp_path, name, base, extra, ranks):
    args = base + extra + ["--numerics", "exact"]
    want = run_ok(tmp_path / f"{name}1", 1, args)
    assert any(k.endswith(".safetensors") for k in want)
    for np in ranks[1:]:
        out = tmp_path / f"{name}{np}"
        assert run_ok(out, np, args) == want, f"{name}: {np} ranks differ from one"
        rep = json.loads((out / "qdist_report.json").read_text())
        assert len(rep["ranks"]) == np
        # block b is staged by rank b % P, every block quantized once
        assert {m["rank"] for k, m in rep["modules"].items() if ".layers.1." in k} == {1 % np}
        assert sum(x["quantized"] for x in rep["ranks"]) == (8 if base is PY else 5)


def test_ranks_without_sequences(tmp_path):
    """4 sequences in chunks of 2 over 4 ranks: ranks 0 and 2 hold none, yet solve and gather."""
    args = opts(PY, nsamples=4) + ["--method", "gptq", "--numerics", "exact"]
    want = run_ok(tmp_path / "one", 1, args)
    assert run_ok(tmp_path / "four", 4, args) == want


# issue 18: in default numerics, P = 1, 2, 4 agree within 0.05 % of ppl (the bound of the issue)
DEFAULT_PPL_TOL = 0.0005


def qweights(d):
    """Every integer tensor of the checkpoint (GPTQ qweight/qzeros/g_idx), by name."""
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        out.update({k: v for k, v in load_file(str(f)).items() if not v.is_floating_point()})
    return out


def test_default_numerics_repeatable_and_ppl_agrees(tmp_path):
    """Fast numerics sum each chunk's Hessian terms in fp64 and reduce the sums in fp64, so P = 1, 2, 4
    see the same Hessian up to fp64 rounding: most codes equal, ppl within 0.05 %."""
    args = opts(PY, nsamples=16, seqlen=128, chunk_tokens=512) + ["--method", "gptq"]
    ppl, loss, codes = {}, {}, {}
    for np in (1, 2, 4):
        out = tmp_path / f"d{np}"
        got = run_ok(out, np, args)
        if np == 2:  # the same bytes run after run for a given P
            assert run_ok(tmp_path / "d2again", 2, args) == got
        r = qt.qdist("eval", "--model", out, "--data", PYCODE / "eval.txt", "--seqlen", "256", "--max-windows", "8",
                     "--json", "--quiet", timeout=300)
        ppl[np] = json.loads(r.stdout)["ppl"]
        rep = json.loads((out / "qdist_report.json").read_text())
        loss[np] = (rep["modules"]["model.layers.0.self_attn.q_proj"]["loss"], rep["totals"]["loss"])
        codes[np] = qweights(out)
    for np in (2, 4):
        assert abs(ppl[np] / ppl[1] - 1) < DEFAULT_PPL_TOL, ppl
        assert abs(loss[np][0] / loss[1][0] - 1) < 1e-4, loss
        assert abs(loss[np][1] / loss[1][1] - 1) < 1e-3, loss
        words = sum(v.numel() for k, v in codes[1].items() if k.endswith("qweight"))
        equal = sum(int((v == codes[np][k]).sum()) for k, v in codes[1].items() if k.endswith("qweight"))
        assert words and equal / words >= 0.99, (np, equal, words)


def test_one_chunk_gives_the_one_rank_bytes(tmp_path):
    """All sequences in one chunk: rank 0 holds them, the others none; the row-split sweep and the
    gather give exactly the one-rank checkpoint in default numerics too."""
    args = opts(PY, chunk_tokens=8192) + ["--method", "gptq"]
    assert run_ok(tmp_path / "two", 2, args) == run_ok(tmp_path / "one", 1, args)


def test_kill_then_resume_with_other_rank_count(tmp_path):
    args = PY + ["--method", "gptq", "--numerics", "exact"]
    want = run_ok(tmp_path / "ref", 1, args)
    out = tmp_path / "killed"
    r = quantize(out, 3, args, env={"QD_INJECT_KILL": "1:4"})
    assert r.returncode != 0
    staged = sorted(p.name for p in (tmp_path / "killed.qdist-staging").glob("block-*.h5"))
    assert staged and len(staged) < 8, staged
    assert not out.exists()
    assert run_ok(out, 2, args + ["--resume"]) == want


def test_failing_rank_ends_job_naming_rank_and_block(tmp_path):
    t0 = time.time()
    r = quantize(tmp_path / "fail", 3, PY + ["--method", "gptq"], env={"QD_INJECT_FAIL": "1:2"}, timeout=120)
    assert r.returncode != 0 and time.time() - t0 < 60
    assert "[rank 1] error: block 2: failure injected" in r.stderr, r.stderr
    assert "rank 1 on host" in r.stderr and "failed in block 2" in r.stderr, r.stderr
    assert not (tmp_path / "fail").exists()


def test_awq_default_numerics(tmp_path):
    """AWQ's means, candidate losses and clip tokens reduced over the ranks: every candidate ratio
    equal to one rank's (printed per mapping), the ppl the same within DEFAULT_PPL_TOL."""
    args = opts(PY, nsamples=16, seqlen=128, chunk_tokens=512) + ["--method", "awq", "--format", "compressed-tensors"]
    args = [a for a in args if a != "--quiet"]
    ratios, ppl = {}, {}
    for np in (1, 2):
        r = quantize(tmp_path / f"a{np}", np, args)
        assert r.returncode == 0, r.stderr
        ratios[np] = [l.split("model.layers.", 1)[1] for l in r.stderr.splitlines()
                      if "awq scales ratio" in l and ("[rank " not in l or "[rank 0]" in l)]
        # the ranks compute the same search: only the stage's first rank prints it
        assert not [l for l in r.stderr.splitlines() if "awq scales ratio" in l and "[rank 1]" in l]
        e = qt.qdist("eval", "--model", tmp_path / f"a{np}", "--data", PYCODE / "eval.txt", "--seqlen", "256",
                     "--max-windows", "8", "--json", "--quiet", timeout=300)
        ppl[np] = json.loads(e.stdout)["ppl"]
    assert len(ratios[1]) == 8 * 3 and ratios[1] == ratios[2]  # GQA: v -> o is not scaled
    assert abs(ppl[2] / ppl[1] - 1) < DEFAULT_PPL_TOL, ppl


def test_overlap_needs_the_pipeline_layout(tmp_path):
    r = quantize(tmp_path / "o", 1, ST + ["--method", "gptq", "--schedule", "overlap"])
    assert r.returncode == 2 and "--parallel pipeline" in r.stderr, r.stderr
