# SPDX-License-Identifier: MIT
"""The 2-D layout (--pipeline-stages S; issue 18 item 3), on real MPI ranks on this machine.

- --numerics exact: (P, S) = (1, 1), (2, 2), (4, 2), (4, 4) give byte-identical checkpoints (GPTQ, AWQ),
  also when a stage's second rank holds no calibration sequence;
- the stages own contiguous block ranges, each staged by a rank of its stage (the report's ranks);
- default numerics: a stage of G ranks computes as a data-parallel run of G ranks, so (4, 2) gives the
  bytes of (2, 1);
- S not dividing P, or above the block count, is a usage error (exit 2) said once; --schedule overlap
  with S > 1 is refused;
- a rank killed in the second stage, resumed with another (P, S), gives the uninterrupted checkpoint.
"""
import json

import pytest

import qdtest as qt
from qdtest import PYCODE, checkpoint_bytes

qt.need(PYCODE)
qt.need_mpirun()
# pycode-16m (8 blocks), 7 sequences in chunks of 2 (128 tokens / 64): four chunks, the last one short
PY = ["--model", str(PYCODE), "--calib", str(PYCODE / "calib.jsonl"), "--nsamples", "7", "--seqlen", "64",
      "--chunk-tokens", "128", "--group-size", "64", "--quiet", "--progress", "none", "--numerics", "exact"]
GPTQ = PY + ["--method", "gptq"]


def quantize(out, np, stages, args, env=None, timeout=300):
    return qt.mpirun(np, "quantize", "--output", out, "--pipeline-stages", stages, *args, ok=False, env=env,
                     timeout=timeout)


def run_ok(out, np, stages, args, **kw):
    r = quantize(out, np, stages, args, **kw)
    assert r.returncode == 0, r.stderr
    return checkpoint_bytes(out)


@pytest.mark.parametrize("name,args", [
    ("gptq", GPTQ),
    ("awq", PY + ["--method", "awq", "--format", "compressed-tensors"]),
    # one chunk of 2 sequences: local rank 1 of every stage owns none and hands nothing on
    ("gptq-one-chunk", [a if a != "7" else "2" for a in GPTQ]),
])
def test_exact_numerics_byte_identical_for_every_layout(tmp_path, name, args):
    want = run_ok(tmp_path / "p1s1", 1, 1, args)
    assert any(k.endswith(".safetensors") for k in want)
    for np, stages in ((2, 2), (4, 2), (4, 4)):
        assert run_ok(tmp_path / f"p{np}s{stages}", np, stages, args) == want, f"{name}: P={np} S={stages} differ"


def test_default_numerics_stage_computes_as_its_group(tmp_path):
    args = [a for a in GPTQ if a not in ("--numerics", "exact")]
    assert run_ok(tmp_path / "p4s2", 4, 2, args) == run_ok(tmp_path / "p2s1", 2, 1, args)


def test_stages_own_contiguous_block_ranges(tmp_path):
    out = tmp_path / "o"
    run_ok(out, 4, 2, GPTQ)
    ranks = json.loads((out / "qdist_report.json").read_text())["ranks"]
    ranges = [(r["first_block"], r["blocks"]) for r in ranks]
    # ranks 0, 1 share stage 0's range, ranks 2, 3 stage 1's; together the 8 blocks, split evenly
    assert ranges[0] == ranges[1] and ranges[2] == ranges[3] and ranges[0] != ranges[2], ranges
    assert ranges[0][0] == 0 and ranges[0][0] + ranges[0][1] == ranges[2][0] and sum(c for _, c in ranges[::2]) == 8
    # each block staged once, by a rank of its stage: local rank b % 2
    assert [r["quantized"] for r in ranks] == [ranges[0][1] // 2] * 4, ranks


def test_stages_not_dividing_ranks_refused(tmp_path):
    r = quantize(tmp_path / "x", 3, 2, GPTQ, timeout=120)
    assert r.returncode == 2, r.stderr
    errors = [l for l in r.stderr.splitlines() if "error:" in l]
    assert len(errors) == 1 and "--pipeline-stages 2 does not divide the 3 ranks" in errors[0], r.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.qdist-staging").exists()
    r = quantize(tmp_path / "y", 16, 16, GPTQ, timeout=120)
    errors = [l for l in r.stderr.splitlines() if "error:" in l]
    assert r.returncode == 2 and len(errors) == 1 and "model has only 8 blocks" in errors[0], r.stderr


def test_overlap_schedule_refused_with_stages(tmp_path):
    r = quantize(tmp_path / "o", 2, 2, GPTQ + ["--schedule", "overlap"], timeout=120)
    assert r.returncode == 2 and "--schedule overlap is not available with --pipeline-stages" in r.stderr, r.stderr
    r = quantize(tmp_path / "p", 2, 2, GPTQ + ["--parallel", "pipeline"], timeout=120)
    assert r.returncode == 2 and "drop --parallel pipeline" in r.stderr, r.stderr


def test_kill_in_second_stage_then_resume_with_other_layout(tmp_path):
    want = run_ok(tmp_path / "ref", 1, 1, GPTQ)
    out = tmp_path / "killed"
    # rank 3 is local rank 1 of stage 1 (blocks 4-7): it stages block 5, then dies
    r = quantize(out, 4, 2, GPTQ, env={"QD_INJECT_KILL": "3:5"})
    assert r.returncode != 0
    staged = sorted(p.name for p in (tmp_path / "killed.qdist-staging").glob("block-*.h5"))
    assert "block-00005.h5" in staged and len(staged) < 8, staged
    assert not out.exists()
    assert run_ok(out, 2, 2, GPTQ + ["--resume"]) == want
