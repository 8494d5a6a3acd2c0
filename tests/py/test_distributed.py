# SPDX-License-Identifier: MIT
"""The distributed pipeline (--parallel pipeline) end to end, on real MPI ranks on this machine (issue 7).

- exact schedule: P = 1, 2, 3, 4 ranks give byte-identical checkpoints (GPTQ and AWQ), and the
  fake-quant format, an export from the staging like the others, is byte-identical on 1 and 2 ranks;
- a rank killed with SIGKILL in the middle of a run, then --resume (with another rank count): the
  checkpoint is byte-identical to an uninterrupted run; a kill -9 from outside does the same;
- a resume with a different calibration is refused naming the differing fingerprint field;
- an injected failure on one rank ends the whole job quickly, non-zero, naming rank, host and block;
- the overlap schedule produces a complete checkpoint that differs from exact (as it must).
"""
import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np_
import pytest

import qdtest as qt
from qdtest import C4_TRAIN as CALIB
from qdtest import QDIST, checkpoint_bytes
from qdtest import STORIES as MODEL

qt.need(MODEL, CALIB)
qt.need_mpirun()
# stories260K's MLP width (172) takes no group size that divides it, so one group per row
# the pipeline layout (--parallel pipeline); the data-parallel one is tests/py/test_data_parallel.py
BASE = ["--model", str(MODEL), "--calib", str(CALIB), "--nsamples", "16", "--seqlen", "128",
        "--group-size", "-1", "--quiet", "--progress", "none", "--parallel", "pipeline"]


def quantize(out, np=1, extra=(), env=None, timeout=240):
    # an option in extra replaces BASE's (qdist refuses one option given twice with two values)
    given = {a for a in extra if str(a).startswith("--")}
    base = [a for i, a in enumerate(BASE)
            if a not in given and not (i and BASE[i - 1] in given and not a.startswith("--"))]
    return qt.mpirun(np, "quantize", "--output", out, *base, *extra, ok=False, env=env, timeout=timeout,
                     pass_env=["QD_INJECT_KILL", "QD_INJECT_FAIL"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "gptq1"
    r = quantize(out, 1, ["--method", "gptq", "--format", "gptq"])
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("np", [2, 3, 4])
def test_exact_schedule_is_byte_identical(reference, tmp_path, np):
    out = tmp_path / f"gptq{np}"
    r = quantize(out, np, ["--method", "gptq", "--format", "gptq"])
    assert r.returncode == 0, r.stderr
    assert checkpoint_bytes(out) == checkpoint_bytes(reference)
    rep = json.loads((out / "qdist_report.json").read_text())
    assert len(rep["ranks"]) == np
    assert sum(x["blocks"] for x in rep["ranks"]) == 5
    assert not (tmp_path / f"gptq{np}.qdist-staging").exists()


def test_awq_exact_two_ranks(tmp_path):
    a, b = tmp_path / "awq1", tmp_path / "awq2"
    extra = ["--method", "awq", "--format", "compressed-tensors", "--asym"]
    r1 = quantize(a, 1, extra)
    assert r1.returncode == 0, r1.stderr
    r2 = quantize(b, 2, extra)
    assert r2.returncode == 0, r2.stderr
    assert checkpoint_bytes(a) == checkpoint_bytes(b)


def test_fake_format_two_ranks_equals_one(tmp_path):
    a, b = tmp_path / "fake1", tmp_path / "fake2"
    extra = ["--method", "gptq", "--format", "fake"]
    r1 = quantize(a, 1, extra)
    assert r1.returncode == 0, r1.stderr
    r2 = quantize(b, 2, extra)
    assert r2.returncode == 0, r2.stderr
    one, two = checkpoint_bytes(a), checkpoint_bytes(b)
    assert "model.safetensors" in one and "config.json" in one
    assert one == two
    # the one report writer: the staged driver's keys, every module with the rank that quantized it
    rep = json.loads((b / "qdist_report.json").read_text())
    assert rep["format"] == "fake" and len(rep["ranks"]) == 2
    mods = rep["modules"]
    assert len(mods) == 5 * 7 and {m["rank"] for m in mods.values()} == {0, 1}
    assert not (tmp_path / "fake2.qdist-staging").exists()


def test_sigkill_then_resume_is_byte_identical(reference, tmp_path):
    out = tmp_path / "killed"
    r = quantize(out, 3, ["--method", "gptq", "--format", "gptq"], env={"QD_INJECT_KILL": "1:2"})
    assert r.returncode != 0
    staging = tmp_path / "killed.qdist-staging"
    staged = sorted(p.name for p in staging.glob("block-*.h5"))
    assert staged and len(staged) < 5, staged
    assert not out.exists()  # nothing that looks like a finished checkpoint
    r = quantize(out, 2, ["--method", "gptq", "--format", "gptq", "--resume"])
    assert r.returncode == 0, r.stderr
    assert checkpoint_bytes(out) == checkpoint_bytes(reference)


def test_external_kill9_then_resume(reference, tmp_path):
    out = tmp_path / "ext"
    staging = tmp_path / "ext.qdist-staging"
    # many samples so the run lasts long enough to be killed in the middle
    cmd = ["mpirun", "--oversubscribe", "-n", "2", QDIST, "quantize", "--output", str(out)] + BASE + \
          ["--method", "gptq", "--format", "gptq"]
    p = subprocess.Popen(cmd, env=qt.MPI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(staging.glob("block-*.h5")) and p.poll() is None:
        time.sleep(0.05)
    pids = subprocess.run(["pgrep", "-f", f"qdist quantize --output {out}"], capture_output=True,
                          text=True).stdout.split()
    killed = False
    if p.poll() is None and pids:
        os.kill(int(pids[-1]), signal.SIGKILL)
        killed = True
    p.communicate(timeout=120)
    if not killed:
        pytest.skip("the run finished before a rank could be killed from outside")
    assert p.returncode != 0
    assert not out.exists()
    r = quantize(out, 1, ["--method", "gptq", "--format", "gptq", "--resume"])
    assert r.returncode == 0, r.stderr
    assert checkpoint_bytes(out) == checkpoint_bytes(reference)


def test_fingerprint_mismatch_is_refused(tmp_path):
    out = tmp_path / "fp"
    r = quantize(out, 1, ["--method", "gptq", "--format", "gptq"], env={"QD_INJECT_FAIL": "0:2"})
    assert r.returncode == 1
    assert "injected" in r.stderr
    r = quantize(out, 1, ["--method", "gptq", "--format", "gptq", "--resume", "--nsamples", "8"])
    assert r.returncode == 1
    err = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and "fingerprint field 'calibration' differs" in err[0], r.stderr
    # without --resume a non-empty staging directory is refused too
    r = quantize(out, 1, ["--method", "gptq", "--format", "gptq"])
    assert r.returncode != 0 and "--resume" in r.stderr


def test_staging_of_the_old_scale_rule_is_refused(tmp_path):
    """blocks staged before integer codes were chosen against the stored (F16) scale: their
    fingerprint.json has no 'scale_rounding' field (what the older qdist wrote); a resume by this
    qdist is refused naming it instead of mixing blocks of the two rules, and nothing is written"""
    out = tmp_path / "old"
    r = quantize(out, 1, ["--method", "gptq", "--format", "gptq"], env={"QD_INJECT_FAIL": "0:2"})
    assert r.returncode == 1 and "injected" in r.stderr
    fp = tmp_path / "old.qdist-staging" / "fingerprint.json"
    doc = json.loads(fp.read_text())
    assert doc["fingerprint"].pop("scale_rounding") == "before-codes"
    fp.write_text(json.dumps(doc))
    r = quantize(out, 1, ["--method", "gptq", "--format", "gptq", "--resume"])
    assert r.returncode == 1 and not out.exists()
    err = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and "fingerprint field 'scale_rounding' differs: staged (absent)" in err[0], r.stderr


def test_injected_failure_ends_job(tmp_path):
    out = tmp_path / "fail"
    t0 = time.time()
    r = quantize(out, 3, ["--method", "gptq", "--format", "gptq"], env={"QD_INJECT_FAIL": "1:2"}, timeout=120)
    assert r.returncode != 0
    assert time.time() - t0 < 60
    assert "[rank 1] error: block 2: failure injected" in r.stderr
    assert "failed in block 2" in r.stderr and "host" in r.stderr
    assert not out.exists()


def test_overlap_schedule(reference, tmp_path):
    out = tmp_path / "overlap"
    r = quantize(out, 3, ["--method", "gptq", "--format", "gptq", "--schedule", "overlap"])
    assert r.returncode == 0, r.stderr
    assert (out / "model.safetensors").exists()
    # blocks after the first rank start from full-precision inputs: the codes differ from exact
    assert checkpoint_bytes(out)["model.safetensors"] != checkpoint_bytes(reference)["model.safetensors"]


def test_too_many_ranks_refused(tmp_path):
    r = quantize(tmp_path / "many", 6, ["--method", "gptq", "--format", "gptq"], timeout=120)
    assert r.returncode != 0
    assert "only 5 blocks" in r.stderr


def test_rtn_without_calibration(tmp_path):
    """RTN needs no calibration: no activations flow, yet ranks still split and stage the blocks."""
    outs = []
    for np in (1, 2):
        out = tmp_path / f"rtn{np}"
        qt.mpirun(np, "quantize", "--model", MODEL, "--output", out, "--method", "rtn", "--format", "gptq",
                  "--group-size", "-1", "--quiet", "--progress", "none", "--parallel", "pipeline", timeout=240)
        outs.append(checkpoint_bytes(out))
    assert outs[0] == outs[1]


def test_resumed_block_fallback_reaches_report_whole(tmp_path):
    """A fallback text longer than 63 bytes is staged and reported whole: here a resumed block's,
    which the report reads back from the staging (older qdist cut it to 63 bytes there)."""
    out = tmp_path / "fb"
    r = quantize(out, 1, ["--method", "rtn", "--format", "gptq"], env={"QD_INJECT_FAIL": "0:2"})
    assert r.returncode == 1 and "injected" in r.stderr, r.stderr
    block0 = tmp_path / "fb.qdist-staging" / "block-00000.h5"
    text = "Cholesky failed for damp 0.0123..1.234 (10 attempts): RTN (Hinv = I); " + "x" * 70 + " end"
    assert 63 < len(text) < 160
    with h5py.File(block0, "r+") as f:
        name = next(iter(f["modules"]))
        f["modules"][name].attrs["fallback"] = np_.bytes_(text)  # a fixed-length string, as qdist writes
    r = quantize(out, 1, ["--method", "rtn", "--format", "gptq", "--resume"])
    assert r.returncode == 0, r.stderr
    mods = json.loads((out / "qdist_report.json").read_text())["modules"]
    assert mods[f"model.layers.0.{name}"]["fallback"] == text
    assert all(m["fallback"] is None for k, m in mods.items() if k != f"model.layers.0.{name}")
