# SPDX-License-Identifier: MIT
"""Exact numerics (`--numerics exact`, docs/cuda.md) is a real mode of the whole CLI, not only of the
kernels (tests/kernels/test-exact.c checks the ops bit for bit): `qdist quantize --numerics exact`
runs end to end, its perplexity is within 1% of fast mode's (GPTQ finds a different, equally good
solution when any bit differs), `qdist eval --numerics exact` gives the fast evaluator's perplexity to
~1e-6, and bad values are refused. Model: fixtures/stories260K-hf, calibrated and evaluated on
fixtures/wikitext-2-raw."""
import json

import pytest

import qdtest as qt
from qdtest import STORIES as MODEL
from qdtest import WIKI

CALIB, TEXT, GS, TOL = WIKI, WIKI, "-1", 0.01  # down_proj's K = 172: one group per row


def run(*args, ok=True):
    return qt.qdist(*args, ok=ok, env=qt.MPI_ENV)


def quantize(out, numerics, method="gptq"):
    run("quantize", "--model", MODEL, "--calib", CALIB, "--output", out, "--format", "fake", "--method", method,
        "--bits", "4", "--group-size", GS, "--nsamples", "8", "--seqlen", "128", "--numerics", numerics, "--overwrite",
        "--quiet")


def ppl(model, *extra):
    r = run("eval", "--model", model, "--data", TEXT, "--seqlen", "128", "--max-windows", "4", "--json", *extra)
    return json.loads(r.stdout.strip().splitlines()[-1])["ppl"]


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_quantize_exact_is_a_real_mode(method, tmp_path):
    fast, exact = str(tmp_path / "fast"), str(tmp_path / "exact")
    quantize(fast, "fast", method)
    quantize(exact, "exact", method)
    pf, pe = ppl(fast), ppl(exact)
    print(f"{method}: ppl fast {pf:.5f} exact {pe:.5f}")
    assert abs(pe - pf) / pf < TOL
    # the exact-mode forward gives the same perplexity as the fast one (last bits of fp32 only)
    assert ppl(exact, "--numerics", "exact") == pytest.approx(pe, rel=1e-5)
    # and the backend-name spelling the flag turns into is accepted as such
    assert ppl(exact, "--backend", "cpu+exact") == pytest.approx(pe, rel=1e-5)


def test_bad_numerics_refused(tmp_path):
    r = run("eval", "--model", MODEL, "--data", TEXT, "--numerics", "fastest", ok=False)
    assert r.returncode == 2 and "numerics" in r.stderr, r.stderr
    r = run("eval", "--model", MODEL, "--data", TEXT, "--backend", "cpu+quick", ok=False)
    assert r.returncode == 2 and "+exact" in r.stderr, r.stderr
