# SPDX-License-Identifier: MIT
"""Bad input at the edges of qdist's inputs (issue 14 items 4, 5, 8, 12, 13): numeric options and recipe
numbers outside their range, metadata files that are links or special files, calibration from a pipe,
over-long calibration lines and words, control bytes in names read from files. Each case must end in
one clear error line and a non-zero exit (2 for usage), never a hang, a crash or a silent change."""
import concurrent.futures
import json
import math
import os
import re
import shutil
import struct
import subprocess

import pytest

REPO = os.environ.get("QD_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
QDIST = os.environ.get("QDIST_BIN", os.path.join(REPO, "build", "qdist"))
MODEL = os.path.join(REPO, "fixtures", "pycode-16m")
TIMEOUT = 120  # every case finishes in seconds; a hang fails here instead of blocking CI

CALIB_MAX_LINE = 16 << 20  # QD_CALIB_MAX_LINE_BYTES (src/calib/qd-calib.h)
TOK_MAX_WORD = 64 << 20    # QD_TOK_MAX_WORD_BYTES (src/tokenizer/qd-tokenizer.h)


def run(*args, **kw):
    return subprocess.run([QDIST] + [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT, **kw)


def error_lines(r):
    return [l for l in r.stderr.splitlines() if l.strip()]


# ---- item 4: numeric options ----

def commands():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    body = r.stdout.split("commands:", 1)[1]
    return [m.group(1) for m in re.finditer(r"^  ([a-z][a-z-]*) ", body, re.M)]


RANGE_RE = re.compile(r"^  --([a-z][a-z0-9-]*) \S+ .*\((-?[0-9][0-9.eE+]*[A-Za-z]*)\.\.(-?[0-9][0-9.eE+]*[A-Za-z]*)\)\s*$")


def numeric_options():
    """(command, option, lo, hi) for every option whose --help shows a "MIN..MAX" range."""
    out = []
    for cmd in commands():
        r = run(cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        for line in r.stdout.splitlines():
            m = RANGE_RE.match(line)
            if m:
                out.append((cmd, m.group(1), m.group(2), m.group(3)))
    return out


UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def outside(lo, hi):
    """The values just below lo and just above hi, as text the option's parser reads."""
    ulo, uhi = re.match(r"[-0-9.eE+]*(.*)", lo).group(1), re.match(r"[-0-9.eE+]*(.*)", hi).group(1)
    if ulo or uhi:  # a size: whole bytes
        blo = int(float(lo[: len(lo) - len(ulo)]) * UNITS[ulo.upper()])
        bhi = int(float(hi[: len(hi) - len(uhi)]) * UNITS[uhi.upper()])
        return str(blo - 1), str(bhi + 1)
    if re.fullmatch(r"-?[0-9]+", lo) and re.fullmatch(r"-?[0-9]+", hi):
        return str(int(lo) - 1), str(int(hi) + 1)
    return repr(math.nextafter(float(lo), -math.inf)), repr(math.nextafter(float(hi), math.inf))


def test_help_lists_the_range_of_every_numeric_option():
    found = {(c, o) for c, o, _, _ in numeric_options()}
    # the options the issue names, and one per command that has numeric options
    for want in [("quantize", "damp"), ("quantize", "seed"), ("quantize", "gpu-mem"), ("quantize", "nsamples"),
                 ("quantize", "max-shard-size"), ("quant-layer", "damp"), ("eval", "seqlen"), ("tokenize", "seed"),
                 ("inspect", "vllm-tp"), ("export", "max-shard-size")]:
        assert want in found, f"{want} shows no MIN..MAX range in --help (found {sorted(found)})"


def test_every_numeric_option_accepts_its_bounds_and_refuses_just_outside():
    opts = numeric_options()
    assert opts, "no numeric option shows its range in --help"
    cases = [(cmd, opt, lo, hi, v, True) for cmd, opt, lo, hi in opts for v in (lo, hi)]
    cases += [(cmd, opt, lo, hi, v, False) for cmd, opt, lo, hi in opts for v in outside(lo, hi)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # ~100 short runs: start-up dominates
        results = list(pool.map(lambda c: run(c[0], f"--{c[1]}", c[4]), cases))
    for (cmd, opt, lo, hi, v, inside), r in zip(cases, results):
        if inside:  # accepted: whatever fails next (a missing --model), it is not this option
            assert f"--{opt}:" not in r.stderr and "range" not in r.stderr, (cmd, opt, v, r.stderr)
        else:
            assert r.returncode == 2, (cmd, opt, v, r.returncode, r.stderr)
            lines = error_lines(r)
            assert len(lines) == 1 and f"--{opt}" in lines[0] and f"{lo}..{hi}" in lines[0], (cmd, opt, v, r.stderr)


@pytest.mark.parametrize("opt,value", [("damp", "-1"), ("damp", "5"), ("damp", "-0.5"), ("damp", "nan"),
                                       ("damp", "inf"), ("damp", "1e999"), ("gpu-mem", "-1"), ("seed", "-1"),
                                       ("seed", "18446744073709551615"), ("nsamples", "99999999999"),
                                       ("max-shard-size", "0"), ("max-shard-size", "1e30GB")])
def test_quantize_refuses_bad_numbers_before_any_work(tmp_path, opt, value):
    r = run("quantize", "--model", MODEL, "--output", tmp_path / "out", "--method", "gptq", "--calib",
            os.path.join(MODEL, "calib.jsonl"), "--nsamples", "2", "--seqlen", "16", "--backend", "cpu", f"--{opt}", value)
    assert r.returncode == 2, r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and f"--{opt}" in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("recipe", [{"damp": -1}, {"damp": 5}, {"bits": 4.5}, {"group_size": 1e30},
                                    {"calibration": {"seed": -1}}, {"calibration": {"nsamples": 1e30}},
                                    {"calibration": {"seqlen": 1e12}},
                                    {"overrides": [{"match": ".*", "damp": -0.5}]}])
def test_recipe_numbers_have_the_same_bounds(tmp_path, recipe):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    r = run("quantize", "--model", MODEL, "--output", tmp_path / "out", "--method", "gptq", "--calib",
            os.path.join(MODEL, "calib.jsonl"), "--nsamples", "2", "--seqlen", "16", "--backend", "cpu",
            "--recipe", path)
    assert r.returncode != 0, r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and str(path) in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


# ---- items 8 and 12: calibration files ----

def preview(calib, *extra, shell=False):
    args = ["tokenize", "--model", MODEL, "--calib", calib, "--nsamples", "4", "--seqlen", "32"] + list(extra)
    if shell:  # calib is a bash expression such as <(cat FILE)
        cmd = " ".join([QDIST] + [a if a == calib else "'%s'" % a for a in args])
        return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=TIMEOUT)
    return run(*args)


@pytest.mark.parametrize("name", ["calib.jsonl", "eval.txt"])
def test_calibration_from_a_pipe_equals_the_file(name):
    path = os.path.join(MODEL, name)
    a, b = preview(path), preview(f"<(cat '{path}')", shell=True)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert jb["docs_read"] == ja["docs_read"] and jb["tokens_read"] == ja["tokens_read"], (ja, jb)
    assert jb["sha256"] == ja["sha256"]


def test_jsonl_content_is_read_as_jsonl_whatever_the_name(tmp_path):
    docs = [{"text": "def f%d(x):\n    return x * %d\n" % (i, i) * 20} for i in range(6)]
    named = tmp_path / "c.jsonl"
    named.write_text("".join(json.dumps(d) + "\n" for d in docs))
    plain = tmp_path / "calibration-data"
    shutil.copy(named, plain)
    a, b = preview(named), preview(plain)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja["docs_read"] == len(docs) and jb["docs_read"] == len(docs), (ja, jb)
    assert jb["sha256"] == ja["sha256"]


@pytest.mark.parametrize("ext", ["jsonl", "txt"])
def test_a_calibration_line_over_the_cap_is_refused_with_file_and_line(tmp_path, ext):
    path = tmp_path / f"big.{ext}"
    with open(path, "w") as f:
        f.write('{"text": "a small first document that is long enough for a window of tokens"}\n' * 3)
        f.write("a" * (CALIB_MAX_LINE + 1) + "\n")
    r = preview(path)
    assert r.returncode == 1, r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and f"{path}:4:" in lines[0] and "16 MiB" in lines[0], r.stderr


def test_a_word_over_the_cap_is_refused(tmp_path):
    # eval tokenises the whole file: one word longer than the cap must not reach BPE (~50 bytes/byte)
    path = tmp_path / "word.txt"
    with open(path, "w") as f:
        f.write("a" * (TOK_MAX_WORD + 1))
    r = run("eval", "--model", MODEL, "--data", path, "--backend", "cpu", "--seqlen", "32", "--max-windows", "1")
    assert r.returncode == 1, r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and "64 MiB" in lines[0] and str(TOK_MAX_WORD + 1) in lines[0], r.stderr


# ---- item 5: metadata files copied from the model directory ----

META_MAX = 64 << 20  # QD_META_FILE_MAX_BYTES (shard/qd-meta-files.h)


def model_copy(tmp_path):
    m = tmp_path / "model"
    shutil.copytree(MODEL, m)
    return m


def quantize(model, out, *extra, timeout=TIMEOUT, **kw):
    return subprocess.run([QDIST, "quantize", "--model", str(model), "--output", str(out), "--method", "rtn",
                           "--backend", "cpu", "--quiet"] + [str(e) for e in extra],
                          capture_output=True, text=True, timeout=timeout, **kw)


def tree_bytes(root):
    data = b""
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p) and os.path.isfile(p):
                data += open(p, "rb").read()
    return data


@pytest.mark.parametrize("fmt", ["fake", "gptq"])
def test_a_metadata_link_outside_the_model_is_refused(tmp_path, fmt):
    m = model_copy(tmp_path)
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:SECRET-HASH-7f3a:19000:0:99999:7:::\n")
    os.symlink(secret, m / "merges.txt")
    out = tmp_path / "out"
    r = quantize(m, out, "--format", fmt)
    assert r.returncode == 1, r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and "merges.txt" in lines[0] and "outside" in lines[0], r.stderr
    assert not out.exists()
    for p in tmp_path.iterdir():  # no temporary or staging directory carries it either
        if p.name.startswith("out"):
            assert b"SECRET-HASH-7f3a" not in tree_bytes(p), p


@pytest.mark.parametrize("kind", ["fifo", "device-link", "oversized"])
def test_a_special_or_oversized_metadata_file_is_refused_without_hanging(tmp_path, kind):
    m = model_copy(tmp_path)
    if kind == "fifo":
        os.mkfifo(m / "vocab.json")
    elif kind == "device-link":
        os.symlink("/dev/null", m / "vocab.json")
    else:
        with open(m / "vocab.json", "wb") as f:  # sparse: nothing is written to disk
            f.truncate(META_MAX + 1)
    out = tmp_path / "out"
    r = quantize(m, out, "--format", "fake", timeout=60)
    assert r.returncode == 1, r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and "vocab.json" in lines[0], r.stderr
    assert not out.exists()


def test_metadata_links_inside_are_copied_as_files_with_the_source_mode_at_most(tmp_path):
    m = model_copy(tmp_path)
    os.symlink("tokenizer.json", m / "vocab.json")  # a link inside the model directory is fine
    os.chmod(m / "tokenizer_config.json", 0o600)
    os.chmod(m / "generation_config.json", 0o666)
    out = tmp_path / "out"
    r = quantize(m, out, "--format", "fake", preexec_fn=lambda: os.umask(0))
    assert r.returncode == 0, r.stderr
    assert not os.path.islink(out / "vocab.json")
    assert (out / "vocab.json").read_bytes() == (m / "tokenizer.json").read_bytes()
    assert os.stat(out / "tokenizer_config.json").st_mode & 0o777 == 0o600
    assert os.stat(out / "generation_config.json").st_mode & 0o777 == 0o644


def test_export_refuses_a_link_outside_the_fake_directory(tmp_path):
    fake = tmp_path / "fake"
    r = quantize(MODEL, fake, "--format", "fake")
    assert r.returncode == 0, r.stderr
    secret = tmp_path / "secret"
    secret.write_bytes(b"SECRET-HASH-7f3a\n")
    os.symlink(secret, fake / "notes.txt")
    out = tmp_path / "out"
    r = run("export", "--input", fake, "--output", out, "--format", "gptq")
    assert r.returncode == 1, r.stderr
    lines = error_lines(r)
    assert len(lines) == 1 and "notes.txt" in lines[0], r.stderr
    assert not out.exists()


# ---- item 13 (part): names from files never reach the terminal raw ----

EVIL = "evil\x1b[2J\x1b]0;pwned\x07\x9b31m.weight"


def add_tensor_file(m, name, dtype="F32"):
    """m/extra.safetensors holding one 2-element tensor `name`, listed in the index."""
    header = json.dumps({name: {"dtype": dtype, "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(m / "extra.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, 2.0))
    index = json.loads((m / "model.safetensors.index.json").read_text())
    index["weight_map"][name] = "extra.safetensors"
    (m / "model.safetensors.index.json").write_text(json.dumps(index))


def assert_no_raw_control(text):
    raw = [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]
    assert not raw, (raw, text[-2000:])


def test_inspect_prints_a_tensor_name_escaped(tmp_path):
    m = model_copy(tmp_path)
    add_tensor_file(m, EVIL)
    r = subprocess.run([QDIST, "inspect", str(m)], capture_output=True, timeout=TIMEOUT)
    out = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    assert r.returncode == 0, out
    assert_no_raw_control(out)
    assert "evil\\x1b[2J" in out, out


def test_an_error_naming_a_tensor_prints_it_escaped(tmp_path):
    m = model_copy(tmp_path)
    add_tensor_file(m, EVIL, dtype="X9")
    r = subprocess.run([QDIST, "inspect", str(m)], capture_output=True, timeout=TIMEOUT)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 1, err
    assert_no_raw_control(err)
    assert "evil\\x1b[2J" in err and len(error_lines(subprocess.CompletedProcess([], 1, "", err))) == 1, err


def test_an_error_naming_a_json_key_prints_it_escaped(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"\x1b]0;pwned\x07bits": 4}))
    r = subprocess.run([QDIST, "quantize", "--model", MODEL, "--output", str(tmp_path / "out"), "--method", "rtn",
                        "--recipe", str(path)], capture_output=True, timeout=TIMEOUT)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode != 0, err
    assert_no_raw_control(err)
    assert "\\x1b]0;pwned\\x07bits" in err, err


def test_a_hugging_face_cache_snapshot_still_works(tmp_path):
    # hub snapshots are links into the repository's blobs/: outside the snapshot, yet the model's own files
    repo = tmp_path / "hub" / "models--org--pycode"
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    for i, name in enumerate(sorted(os.listdir(MODEL))):
        shutil.copy(os.path.join(MODEL, name), repo / "blobs" / f"blob{i:02d}")
        os.symlink(f"../../blobs/blob{i:02d}", snap / name)
    out = tmp_path / "out"
    r = quantize(snap, out, "--format", "fake")
    assert r.returncode == 0, r.stderr
    assert (out / "tokenizer.json").read_bytes() == open(os.path.join(MODEL, "tokenizer.json"), "rb").read()
    assert not os.path.islink(out / "tokenizer.json")
