# SPDX-License-Identifier: MIT
"""The user's files on disk (issue 14 items 1, 2, 3, 9, 13): qdist never deletes or empties the
model, an input or a directory it did not write. Paths that overlap (output / model / staging,
tokenize's output / input) are refused before any work, naming both flags; --overwrite replaces only
a directory carrying qdist's .qdist-output marker; a staging directory in use by another run is
refused naming that run; a killed run's OUT.qdist-tmp-<host>-<pid> is removed by the next run; a
name too long for qdist's temporary names is refused up front (docs/data-safety.md)."""
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess

import pytest

REPO = os.environ.get("QD_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
QDIST = os.environ.get("QDIST_BIN", os.path.join(REPO, "build", "qdist"))
FIXTURE = os.path.join(REPO, "fixtures", "pycode-16m")
TIMEOUT = 120
RTN = ["--method", "rtn", "--progress", "none"]


def run(*args, **kw):
    return subprocess.run([QDIST] + [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT, **kw)


def tree_digest(path):
    """every file under path with its bytes' sha256 (symlinks not followed)"""
    out = {}
    for root, dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def one_error(r):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "error" in lines[0], r.stderr
    return lines[0]


@pytest.fixture
def model(tmp_path):
    """a private copy of pycode-16m (weights, config, tokenizer) that a test may see deleted"""
    m = tmp_path / "m"
    m.mkdir()
    for f in os.listdir(FIXTURE):
        if f.endswith((".safetensors", ".json")):
            shutil.copy(os.path.join(FIXTURE, f), m / f)
    return m


def quantize(model, out, *extra):
    return run("quantize", "--model", model, "--output", out, *RTN, *extra)


# ---- item 1: the output never overlaps the model; --overwrite replaces only qdist's own output ----

def test_output_equal_to_model_is_refused(model):
    before = tree_digest(model)
    r = quantize(model, model, "--overwrite")
    assert r.returncode == 2
    err = one_error(r)
    assert "--output" in err and "--model" in err
    assert tree_digest(model) == before


def test_output_through_symlink_to_model_is_refused(model, tmp_path):
    link = tmp_path / "mlink"
    link.symlink_to(model)
    before = tree_digest(model)
    r = quantize(link, model, "--overwrite")
    assert r.returncode == 2 and "--model" in one_error(r)
    r = quantize(model, link, "--overwrite")
    assert r.returncode == 2 and "--model" in one_error(r)
    assert tree_digest(model) == before


def test_output_parent_of_model_is_refused(tmp_path):
    par = tmp_path / "par"
    par.mkdir()
    m = par / "model"
    shutil.copytree(FIXTURE, m, ignore=shutil.ignore_patterns("eval.txt", "calib.jsonl"))
    (par / "notes.txt").write_text("the user's\n")
    before = tree_digest(par)
    r = quantize(m, par, "--overwrite")
    assert r.returncode == 2
    err = one_error(r)
    assert "--output" in err and "--model" in err
    assert tree_digest(par) == before


def test_output_inside_model_is_refused(model):
    before = tree_digest(model)
    r = quantize(model, model / "q")
    assert r.returncode == 2 and "--model" in one_error(r)
    assert sorted(os.listdir(model)) == sorted(before)


def test_overwrite_refuses_a_directory_qdist_did_not_write(model, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work\n")
    r = quantize(model, other, "--overwrite")
    assert r.returncode == 2
    err = one_error(r)
    assert str(other) in err and ".qdist-output" in err
    assert (other / "thesis.tex").read_text() == "years of work\n"
    # without --overwrite the refusal must not suggest passing it for such a directory
    r = quantize(model, other)
    assert r.returncode == 2 and "--overwrite" not in one_error(r)
    assert sorted(os.listdir(other)) == ["thesis.tex"]


@pytest.mark.parametrize("fmt", ["gptq", "fake"])
def test_overwrite_replaces_qdist_output(model, tmp_path, fmt):
    out = tmp_path / "out"
    r = quantize(model, out, "--format", fmt)
    assert r.returncode == 0, r.stderr
    assert '"qdist"' in (out / ".qdist-output").read_text()
    r = quantize(model, out, "--format", fmt)
    assert r.returncode == 2 and "--overwrite" in one_error(r)
    (out / "stale.txt").write_text("from the earlier run's user\n")
    r = quantize(model, out, "--format", fmt, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert not (out / "stale.txt").exists() and (out / ".qdist-output").exists()


def test_export_output_never_overlaps_its_input(model, tmp_path):
    fake = tmp_path / "fake"
    assert quantize(model, fake, "--format", "fake").returncode == 0
    before = tree_digest(fake)
    for out in (fake, fake / "sub", tmp_path):
        r = run("export", "--input", fake, "--output", out, "--format", "gptq", "--overwrite")
        assert r.returncode == 2
        err = one_error(r)
        assert "--input" in err and "--output" in err
    assert tree_digest(fake) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep").write_text("x")
    r = run("export", "--input", fake, "--output", other, "--format", "gptq", "--overwrite")
    assert r.returncode == 2 and ".qdist-output" in one_error(r)
    assert (other / "keep").read_text() == "x"
    ex = tmp_path / "ex"
    assert run("export", "--input", fake, "--output", ex, "--format", "gptq").returncode == 0
    assert (ex / ".qdist-output").exists()


# ---- item 2: the staging never overlaps the output or the model, and its clean-up is narrow ----

@pytest.mark.parametrize("case", ["staging-parent-of-output", "staging-inside-output", "staging-is-output",
                                  "staging-is-model", "staging-inside-model"])
def test_staging_overlap_is_refused(model, tmp_path, case):
    out = tmp_path / "st" / "out" if case == "staging-parent-of-output" else tmp_path / "out"
    staging = {"staging-parent-of-output": tmp_path / "st", "staging-inside-output": out / "st",
               "staging-is-output": out, "staging-is-model": model, "staging-inside-model": model / "st"}[case]
    before = tree_digest(tmp_path)
    r = quantize(model, out, "--staging", staging)
    assert r.returncode == 2
    err = one_error(r)
    assert "--staging" in err and ("--output" in err or "--model" in err)
    assert tree_digest(tmp_path) == before and not out.exists()


def test_staging_cleanup_removes_only_qdist_files(model, tmp_path):
    out, staging = tmp_path / "out", tmp_path / "st"
    r = quantize(model, out, "--staging", staging, "--keep-staging")
    assert r.returncode == 0, r.stderr
    assert any(f.startswith("block-") for f in os.listdir(staging))
    (staging / "notes.txt").write_text("not qdist's\n")
    r = quantize(model, out, "--staging", staging, "--resume", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert os.listdir(staging) == ["notes.txt"]
    # with nothing foreign in it, the staging directory goes away
    (staging / "notes.txt").unlink()
    r = quantize(model, out, "--staging", staging, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert not staging.exists()


# ---- item 3: tokenize never empties its own input and leaves no partial output ----

def jsonl(path, lines):
    path.write_text("".join(l + "\n" for l in lines))
    return path


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("flag", ["--input", "--calib"])
def test_tokenize_output_is_its_input(model, tmp_path, how, flag):
    src = jsonl(tmp_path / "in.jsonl", ['{"text": "def f(x):\\n    return x"}'] * 4)
    data = src.read_bytes()
    out = {"same": src, "symlink": tmp_path / "l.jsonl", "hardlink": tmp_path / "h.jsonl"}[how]
    if how == "symlink":
        out.symlink_to(src)
    elif how == "hardlink":
        os.link(src, out)
    extra = ["--nsamples", "1", "--seqlen", "4"] if flag == "--calib" else []
    r = run("tokenize", "--model", model, flag, src, "--output", out, *extra)
    assert r.returncode == 2
    err = one_error(r)
    assert "--output" in err and flag in err
    assert src.read_bytes() == data


def test_tokenize_output_inside_model_is_refused(model, tmp_path):
    src = jsonl(tmp_path / "in.jsonl", ['{"text": "x = 1"}'])
    before = tree_digest(model)
    r = run("tokenize", "--model", model, "--input", src, "--output", model / "tokenizer.json")
    assert r.returncode == 2 and "--model" in one_error(r)
    assert tree_digest(model) == before


def test_tokenize_failure_leaves_no_partial_output(model, tmp_path):
    good = jsonl(tmp_path / "good.jsonl", ['{"text": "x = 1"}', '{"text": "y = 2"}'])
    bad = jsonl(tmp_path / "bad.jsonl", ['{"text": "x = 1"}', '{"text": "y = 2"}', '{"oops": 3}'])
    fresh = tmp_path / "fresh.jsonl"
    r = run("tokenize", "--model", model, "--input", bad, "--output", fresh)
    assert r.returncode == 1 and "bad.jsonl:3" in one_error(r)
    assert not fresh.exists()
    prev = tmp_path / "prev.jsonl"
    assert run("tokenize", "--model", model, "--input", good, "--output", prev).returncode == 0
    data = prev.read_bytes()
    assert data.count(b"\n") == 2
    r = run("tokenize", "--model", model, "--input", bad, "--output", prev)
    assert r.returncode == 1
    assert prev.read_bytes() == data  # the earlier output is left whole, not half rewritten
    assert sorted(os.listdir(tmp_path)) == ["bad.jsonl", "good.jsonl", "m", "prev.jsonl"]
    # an output named through a symlink is written to its target; the link stays a link
    link = tmp_path / "link.jsonl"
    link.symlink_to(prev)
    prev.write_text("old\n")
    assert run("tokenize", "--model", model, "--input", good, "--output", link).returncode == 0
    assert link.is_symlink() and prev.read_bytes() == data
    # standard output cannot be replaced: it is written in place
    r = run("tokenize", "--model", model, "--input", good, "--output", "/dev/stdout")
    assert r.returncode == 0 and r.stdout.encode() == data


def test_quant_layer_output_is_its_input(tmp_path):
    # a tiny layer file by hand: "weight" F32 [4,32], "inputs" F32 [8,32]
    hdr, data, off = {}, b"", 0
    for name, shape in (("weight", [4, 32]), ("inputs", [8, 32])):
        n = shape[0] * shape[1] * 4
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
        data += struct.pack("<%df" % (n // 4), *[((i * 37) % 17 - 8) / 8 for i in range(n // 4)])
        off += n
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    layer = tmp_path / "L.safetensors"
    layer.write_bytes(struct.pack("<Q", len(h)) + h + data)
    link = tmp_path / "R.safetensors"
    link.symlink_to(layer)
    before = layer.read_bytes()
    for out in (layer, link):
        r = run("quant-layer", "--input", layer, "--output", out, "--method", "rtn", "--group-size", "32")
        assert r.returncode == 2 and "--input" in one_error(r)
    assert layer.read_bytes() == before


# ---- item 9: the staging directory is locked for the whole run ----

@pytest.mark.parametrize("resume", [True, False])
def test_locked_staging_is_refused_and_untouched(model, tmp_path, resume):
    out, staging = tmp_path / "out", tmp_path / "out.qdist-staging"
    r = quantize(model, out, "--keep-staging")
    assert r.returncode == 0, r.stderr
    interrupted = staging / "block-00003.h5.tmp"  # the other run's write in progress
    interrupted.write_bytes(b"half a block")
    # this process plays the first run: it holds the lock, as qdist's rank 0 does
    with open(staging / "lock", "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.truncate(0)
        f.write("host node17 pid 4242\n")
        f.flush()
        before = tree_digest(staging)
        r = quantize(model, out, "--overwrite", *(["--resume"] if resume else []))
        assert r.returncode != 0
        err = one_error(r)
        assert "4242" in err and "node17" in err and str(staging) in err
        assert tree_digest(staging) == before
    # once the first run is gone, --resume continues it (and removes the interrupted write)
    r = quantize(model, out, "--overwrite", "--resume")
    assert r.returncode == 0, r.stderr
    assert not staging.exists()


def test_lock_names_this_run(model, tmp_path):
    out, staging = tmp_path / "out", tmp_path / "st"
    r = quantize(model, out, "--staging", staging, "--keep-staging")
    assert r.returncode == 0, r.stderr
    text = (staging / "lock").read_text()
    m = re.fullmatch(r"host (\S+) pid (\d+)\n", text)
    assert m, text
    assert int(m.group(2)) > 0


# ---- item 13: stale temporary outputs, over-long names ----

def host_tag():
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64]


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stale_tmp_of_a_killed_run_is_removed(model, tmp_path):
    out = tmp_path / "out"
    host = host_tag()
    stale = tmp_path / f"out.qdist-tmp-{host}-{dead_pid()}"
    live = tmp_path / f"out.qdist-tmp-{host}-{os.getpid()}"  # a run of this host still going
    remote = tmp_path / f"out.qdist-tmp-{host}x-{dead_pid()}"  # another node's run: not ours to judge
    foreign = tmp_path / f"out.qdist-tmp-{host}-{dead_pid()}-notes"  # not a name qdist makes
    unmarked = tmp_path / f"out.qdist-tmp-{host}-{dead_pid()}"  # qdist's name, but not qdist's directory
    for d in (stale, live, remote, foreign, unmarked):
        d.mkdir()
        if d != unmarked:
            (d / ".qdist-output").write_text('{"tool": "qdist", "version": "0"}\n')
        (d / "model.safetensors").write_bytes(b"partial")
    r = quantize(model, out, "--format", "gptq")
    assert r.returncode == 0, r.stderr
    assert not stale.exists()
    assert live.exists() and remote.exists() and foreign.exists() and unmarked.exists()
    assert not [f for f in os.listdir(tmp_path) if ".qdist-tmp-" in f and f not in
                (live.name, remote.name, foreign.name, unmarked.name)]


@pytest.mark.parametrize("kind", ["component", "total"])
def test_overlong_output_is_refused_up_front(model, tmp_path, kind):
    if kind == "component":
        out = tmp_path / ("o" * 240)  # fits NAME_MAX, but not with ".qdist-tmp-<host>-<pid>" after it
    else:
        base = str(tmp_path)
        depth = (4060 - len(base)) // 201
        out = base + ("/" + "d" * 200) * depth
        out += "/" + "e" * max(1, 4060 - len(out) - 1)
    before = sorted(os.listdir(tmp_path))
    r = quantize(model, out, "--format", "gptq")
    assert r.returncode == 2
    err = one_error(r)
    assert "--output" in err and "bytes" in err
    assert sorted(os.listdir(tmp_path)) == before
