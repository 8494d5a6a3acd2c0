# SPDX-License-Identifier: MIT
"""The export written during the run (issue 17 item 2, mpi/run-stream.c, shard/export-stream.c):

- every checkpoint format, with act-order, a recipe skip and a per-module override: a streamed
  `quantize` writes the same bytes as the export after the run from the same staging (QD_EXPORT_STREAM=0
  with --resume, the path before streaming), and as a streamed --resume that reads every block back
  from the staging; the report says how many blocks were written during the run and the export tail;
- two ranks (rank 0 streams its own blocks, the others' come from the staging at the end) equal one;
- a run killed after some blocks leaves no output directory (only a temporary one, removed by the
  next run), and --resume gives the same bytes; so does one killed after its last block, which is held
  back from the staging unless --keep-staging, also when a recipe leaves it without a quantized module;
- GPTQ v1's refusal of a zero point of 0, which only the data shows, stays one clear line with the
  --resume hint, and leaves neither the output nor its temporary directory.
"""
import json
import shutil
from pathlib import Path

import h5py
import pytest
import torch
from safetensors.torch import load_file, save_file

import qdtest as qt
from qdtest import checkpoint_bytes as files
from qdtest import PYCODE as MODEL  # 8 blocks, hidden 384, MLP 1024: group 128 divides every Linear

CALIB = MODEL / "calib.jsonl"
NBLOCKS = 8
BASE = ["--model", str(MODEL), "--calib", str(CALIB), "--nsamples", "8", "--seqlen", "64", "--group-size", "128",
        "--progress", "none"]


def quantize(out, extra, np=1, env=None, timeout=300):
    """the streamed export unless env sets QD_EXPORT_STREAM (the environment's setting dropped)"""
    return qt.mpirun(np, "quantize", "--output", out, *BASE, *extra, ok=False, timeout=timeout,
                     env={"QD_EXPORT_STREAM": None, **(env or {})})


def totals(d):
    return json.loads((Path(d) / "qdist_report.json").read_text())["totals"]


def leftovers(parent):
    return [p.name for p in Path(parent).iterdir() if ".qdist-tmp-" in p.name]


SKIP = {"match": r"layers\.2\.mlp\.down_proj$", "skip": True}
W8 = {"match": r"layers\.5\.self_attn\.o_proj$", "bits": 8}  # awq holds 4 bits only
CASES = [
    ("gptq-act", "gptq", ["--method", "gptq", "--act-order"], [SKIP, W8]),
    ("gptq_v2-asym-act", "gptq_v2", ["--method", "gptq", "--asym", "--act-order"], [SKIP, W8]),
    ("awq", "awq", ["--method", "awq", "--asym"], [SKIP]),
    ("ct-static", "compressed-tensors", ["--method", "gptq", "--act-order", "--static-groups"], [SKIP, W8]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_streamed_equals_export_after_the_run(case, tmp_path):
    _, fmt, args, overrides = case
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"overrides": overrides}))
    args = args + ["--format", fmt, "--recipe", recipe]
    streamed, staging = tmp_path / "streamed", tmp_path / "staging"
    r = quantize(streamed, args + ["--keep-staging", "--staging", staging])
    assert r.returncode == 0, r.stderr
    t = totals(streamed)
    assert t["export_streamed_blocks"] == NBLOCKS and t["export_tail_s"] >= 0, t
    assert "export_s" in t and "report_s" in t, t  # the keys before streaming stay
    # the export after the run, from the staging alone (every block resumed, nothing quantized)
    after = tmp_path / "after"
    r = quantize(after, args + ["--keep-staging", "--staging", staging, "--resume"], env={"QD_EXPORT_STREAM": "0"})
    assert r.returncode == 0, r.stderr
    assert totals(after)["export_streamed_blocks"] == 0
    # streamed, but every block read back from the staging at the end
    resumed = tmp_path / "resumed"
    r = quantize(resumed, args + ["--staging", staging, "--resume"])
    assert r.returncode == 0, r.stderr
    a, b, c = files(streamed), files(after), files(resumed)
    assert any(k.endswith(".safetensors") for k in a) and "config.json" in a
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        assert a[k] == b[k], f"{fmt}: {k} differs between the streamed export and the one after the run"
        assert a[k] == c[k], f"{fmt}: {k} differs between the streamed export and the resumed one"
    assert not leftovers(tmp_path)


def test_small_shards_streamed(tmp_path):
    """several output shards, their cuts fixed before any block exists"""
    args = ["--method", "rtn", "--format", "gptq", "--max-shard-size", "2MB"]
    a, b = tmp_path / "a", tmp_path / "b"
    r = quantize(a, args)
    assert r.returncode == 0, r.stderr
    r = quantize(b, args, env={"QD_EXPORT_STREAM": "0"})
    assert r.returncode == 0, r.stderr
    fa = files(a)
    assert sum(k.endswith(".safetensors") for k in fa) > 2 and "model.safetensors.index.json" in fa
    assert fa == files(b)


def test_two_ranks_equal_one(tmp_path):
    args = ["--method", "gptq", "--format", "gptq"]
    one, two = tmp_path / "one", tmp_path / "two"
    r = quantize(one, args)
    assert r.returncode == 0, r.stderr
    r = quantize(two, args, np=2)
    assert r.returncode == 0, r.stderr
    assert 0 < totals(two)["export_streamed_blocks"] < NBLOCKS  # rank 0's own; rank 1's from the staging
    assert files(one) == files(two)


def test_killed_run_leaves_no_output_and_resumes_identical(tmp_path):
    args = ["--method", "gptq", "--format", "gptq_v2", "--asym"]
    ref = tmp_path / "ref"
    r = quantize(ref, args)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    r = quantize(out, args, env={"QD_INJECT_KILL": "0:4"})
    assert r.returncode != 0
    assert not out.exists(), "a killed run left an output directory"
    assert (tmp_path / "out.qdist-staging").is_dir()
    r = quantize(out, args + ["--resume"])
    assert r.returncode == 0, r.stderr
    t = totals(out)
    assert 0 < t["export_streamed_blocks"] < NBLOCKS, t  # the resumed blocks came from the staging
    assert files(out) == files(ref)
    assert not leftovers(tmp_path), "the killed run's temporary output was not removed"


def staged(staging):
    return sorted(p.name for p in Path(staging).glob("block-*.h5"))


def test_kill_before_the_commit_resumes_identical(tmp_path):
    """Without --keep-staging the run's last block is held back from the staging (the streamed export
    holds it; the staging is removed once the export commits): a kill after it is quantized and before
    the commit leaves the other blocks staged and no output, and --resume quantizes that one block again
    to the same bytes. With --keep-staging every block is staged before the commit."""
    args = ["--method", "gptq", "--format", "gptq", "--act-order"]
    ref = tmp_path / "ref"
    r = quantize(ref, args)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "ref.qdist-staging").exists()
    out, staging = tmp_path / "out", tmp_path / "out.qdist-staging"
    r = quantize(out, args, env={"QD_INJECT_KILL_EXPORT": "1"})
    assert r.returncode != 0
    assert not out.exists(), "a run killed before its commit left an output directory"
    assert staged(staging) == [f"block-{b:05d}.h5" for b in range(NBLOCKS - 1)]
    assert not list(staging.glob("*.tmp"))
    r = quantize(out, args + ["--resume"])
    assert r.returncode == 0, r.stderr
    rank0 = json.loads((out / "qdist_report.json").read_text())["ranks"][0]
    assert (rank0["quantized"], rank0["replayed"]) == (1, NBLOCKS - 1), rank0
    assert files(out) == files(ref)
    assert not staging.exists() and not leftovers(tmp_path)
    kept, kept_st = tmp_path / "kept", tmp_path / "kept-staging"
    r = quantize(kept, args + ["--keep-staging", "--staging", kept_st], env={"QD_INJECT_KILL_EXPORT": "1"})
    assert r.returncode != 0 and not kept.exists()
    assert len(staged(kept_st)) == NBLOCKS
    r = quantize(kept, args + ["--keep-staging", "--staging", kept_st, "--resume"])
    assert r.returncode == 0, r.stderr
    assert json.loads((kept / "qdist_report.json").read_text())["ranks"][0]["quantized"] == 0
    assert files(kept) == files(ref) and len(staged(kept_st)) == NBLOCKS


def report_modules(d):
    mods = json.loads((Path(d) / "qdist_report.json").read_text())["modules"]
    return {k: (v["N"], v["K"], v["loss"], v["rank"]) for k, v in mods.items()}


def test_recipe_skipping_the_later_blocks_resumes_identical(tmp_path):
    """A recipe that skips every block after the first leaves the last block without a quantized
    module: it is held back like any last block (a kill before the commit leaves it unstaged and --resume
    quantizes it again), and the report - which reads only the resumed blocks from the staging - lists
    block 0's modules alone, the same after a plain run, a resumed one and one resumed from a staging
    that holds every block (--keep-staging: the module-less last block is resumed too)."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"overrides": [{"match": r"layers\.[1-9]\.", "skip": True}]}))
    args = ["--method", "gptq", "--format", "compressed-tensors", "--recipe", recipe]
    ref = tmp_path / "ref"
    r = quantize(ref, args)
    assert r.returncode == 0, r.stderr
    mods = report_modules(ref)
    assert mods and all(k.startswith("model.layers.0.") for k in mods), sorted(mods)
    assert totals(ref)["quantized"] == len(mods)
    out, staging = tmp_path / "out", tmp_path / "out.qdist-staging"
    r = quantize(out, args, env={"QD_INJECT_KILL_EXPORT": "1"})
    assert r.returncode != 0 and not out.exists()
    assert staged(staging) == [f"block-{b:05d}.h5" for b in range(NBLOCKS - 1)]
    r = quantize(out, args + ["--resume"])
    assert r.returncode == 0, r.stderr
    rank0 = json.loads((out / "qdist_report.json").read_text())["ranks"][0]
    assert (rank0["quantized"], rank0["replayed"]) == (1, NBLOCKS - 1), rank0
    assert "(1 quantized now, 7 resumed from staging)" in r.stderr, r.stderr
    assert report_modules(out) == mods
    assert files(out) == files(ref)
    assert not staging.exists() and not leftovers(tmp_path)
    kept, kept_st = tmp_path / "kept", tmp_path / "kept-staging"
    r = quantize(kept, args + ["--keep-staging", "--staging", kept_st], env={"QD_INJECT_KILL_EXPORT": "1"})
    assert r.returncode != 0 and not kept.exists()
    assert len(staged(kept_st)) == NBLOCKS
    r = quantize(kept, args + ["--keep-staging", "--staging", kept_st, "--resume"])
    assert r.returncode == 0, r.stderr
    assert json.loads((kept / "qdist_report.json").read_text())["ranks"][0]["quantized"] == 0
    assert report_modules(kept) == mods
    assert files(kept) == files(ref)


def test_gptq_v1_zero_point_refused_while_streaming(tmp_path):
    """The zero-point check needs the data, so the streamed export makes it as the layer is packed: the
    same one line, the --resume hint, no output and no temporary directory left."""
    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    shard = model / "model-00001-of-00003.safetensors"
    tensors = load_file(str(shard))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert name in tensors
    tensors[name] = tensors[name].abs() + torch.finfo(tensors[name].dtype).tiny  # all positive: zero point 0
    save_file(tensors, str(shard), metadata={"format": "pt"})
    out = tmp_path / "o"
    r = qt.mpirun(1, "quantize", "--model", model, "--output", out, "--method", "rtn", "--asym", "--group-size", "64",
                  "--progress", "none", "--format", "gptq", ok=False, timeout=300, env={"QD_EXPORT_STREAM": None})
    assert r.returncode == 1, r.stderr
    assert "zero point of 0" in r.stderr and "model.layers.0.self_attn.q_proj" in r.stderr, r.stderr
    assert "--resume" in r.stderr, r.stderr
    assert not out.exists() and not leftovers(tmp_path)
    # every block stays staged as the message says, the held-back last one included
    assert staged(tmp_path / "o.qdist-staging") == [f"block-{b:05d}.h5" for b in range(NBLOCKS)]


def test_block_unlike_the_plan_falls_back_to_the_export_after_the_run(tmp_path):
    """A staged block whose modules are not the planned ones (here a module removed from the file with
    h5py: replayed and exported unquantized) is noticed before anything is committed: the checkpoint is
    then exported from the staging after the run, the same bytes as QD_EXPORT_STREAM=0 writes."""
    args = ["--method", "rtn", "--format", "compressed-tensors"]
    staging = tmp_path / "staging"
    r = quantize(tmp_path / "first", args + ["--keep-staging", "--staging", staging])
    assert r.returncode == 0, r.stderr
    with h5py.File(staging / "block-00003.h5", "r+") as f:
        del f["modules/mlp.down_proj"]
    a, b = tmp_path / "a", tmp_path / "b"
    r = quantize(a, args + ["--keep-staging", "--staging", staging, "--resume"])
    assert r.returncode == 0, r.stderr
    assert "quantized differently from the plan" in r.stderr, r.stderr
    assert totals(a)["export_streamed_blocks"] == 0
    r = quantize(b, args + ["--keep-staging", "--staging", staging, "--resume"], env={"QD_EXPORT_STREAM": "0"})
    assert r.returncode == 0, r.stderr
    fa = files(a)
    assert fa == files(b)
    assert fa != files(tmp_path / "first")  # down_proj of block 3 is now unquantized
    assert not leftovers(tmp_path)
