# SPDX-License-Identifier: MIT
"""Every command example in README.md and docs/*.md runs, so a stale example fails CI.

What counts as an example (extract()):
  - each command of a ```sh / ```bash fence (variables assigned in the fence, like M=... or COMMON="...",
    are expanded in the commands after them; comments and `\\` continuations handled);
  - in any other fence or a 4-space indented block, lines that start with a command (qdist, ./build/qdist,
    mpirun, python3, sbatch, ./setup.sh, bench/*.sh, optionally after VAR=value assignments);
  - inline `qdist <command> ...` spans that name a --model or --input (prose that only mentions an option,
    like `qdist quantize --backend cuda`, is not an example).

How an example is made runnable (runnable(); the table below is the whole list of substitutions):
  PLACEHOLDERS: a value that names no existing file is a placeholder, replaced by what its option needs.
  Doc syntax: `[...]` optional parts are included; `a|b|c` takes the first choice; `...` after
  `qdist quantize` is the README's own quantize example; `qdist` is the binary under test.
  SMALL settings keep the whole file under ~2 minutes on 2 cores.
  No GPU in CI: `--backend cuda[:N]` runs as `--backend cpu` (same options, same checks).
Examples that cannot run here get a dry form (DRY: a script's --help must list every option the example
uses; an sbatch template must exist, parse with bash -n and read every variable the example sets, and
the qdist options those variables become must pass qdist's own checks; a bench/*.sh stage must exist).
SKIPPED lists the rest with the reason; pytest -rs prints them, and test_every_skip_is_still_needed
fails when a SKIPPED entry matches no example any more.
"""
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

import qdtest as qt

REPO, QDIST, M = str(qt.REPO), qt.QDIST, str(qt.PYCODE)
CALIB = os.path.join(M, "calib.jsonl")
EVAL_TEXT = os.path.join(M, "eval.txt")
DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))

# --- the substitution table ------------------------------------------------------------------------
# option -> what a placeholder value (one that names no existing path) becomes; {tmp} is the example's
# own temporary directory, {fake} a fake-quant run of the fixture, {text_jsonl} / {ids_jsonl} small
# tokenize inputs made from the fixture's calibration file.
PLACEHOLDERS = {
    "--model": M,                    # MODEL_DIR, DIR, M, stories260K-hf, /data/Llama-3-70B, ...
    "--calib": CALIB,                # data.jsonl, c4_train_sample.jsonl, /data/calib.jsonl
    "--data": EVAL_TEXT,             # text.txt, wiki.test.raw and other placeholders of a text file
    "--input": "{input}",            # export: {fake} (rtn --asym, so awq takes it); tokenize: {text_jsonl}
                                     # ({ids_jsonl} with --decode). `--format a|b|c` of an export: each.
    "--output": "{tmp}/out",         # OUT_DIR, OUT, O, OUT-exact, ids.jsonl (always a fresh path)
    "--staging": "{tmp}/staging",    # S
    "--synthetic": "{tmp}/synthetic",
    "--qdist": QDIST,                # build-dev/qdist, build-quality/qdist
    "--out": "{tmp}/out",
    "--method": "rtn",               # M (a letter standing for each method of a table)
    "--bits": "4",                   # B
    "--format": "gptq",              # F
    "--vllm-tp": "2",                # N
    "--eval": EVAL_TEXT,
}
POSITIONAL_MODEL = M                 # `qdist inspect MODEL_DIR`
# optional flags that are left out, and when (None: always), with the reason
OPTIONAL_RULES = {
    "--ct-format": ("--format compressed-tensors", "applies to compressed-tensors only"),
    "--lm-head": (None, "qdist quantize never quantizes lm_head, so export refuses the flag for its runs "
                        "(tests/py/test_claims.py checks that refusal)"),
}
# settings forced on every run (option -> value), added when absent
SMALL = {
    "quantize": {"--nsamples": "4", "--seqlen": "64"},
    "eval": {"--seqlen": "64", "--max-windows": "2"},
    "tokenize --calib": {"--nsamples": "4", "--seqlen": "64"},
}
QDIST_NAMES = {"qdist", "./build/qdist", "build/qdist", "build-dev/qdist", "build-quality/qdist"}
MPI_RANKS = "2"                      # mpirun -n 8 / -n P
# the slurm templates' environment (docs/slurm.md's table) -> qdist options
SLURM_ENV = {"METHOD": "--method", "BITS": "--bits", "GROUP_SIZE": "--group-size", "FORMAT": "--format"}
SLURM_DEFAULTS = {"--method": "gptq", "--bits": "4", "--group-size": "128", "--format": "gptq"}

# --- what does not run here, and why (regex on the example as written) -----------------------------
SKIPPED = {
    r"^\./setup\.sh demo": "installs system packages and builds; CI runs ./setup.sh itself (.ci/run)",
    r"^\./setup\.sh test": "runs this very suite; CI runs it as written (.ci/run)",
    r"gen-unicode-tables\.py": "needs unicodedata2==16.0.0 from PyPI; the tokenizer tests pin the tables it wrote",
}
# python scripts and bench/*.sh stages: a dry form only (GPU, 16 GB synthetic models or minutes of torch)
DRY_PYTHON = r"^python3 (bench/\S+\.py)"
DRY_SH = r"^(bench/\S+\.sh)"


def extract():
    cmd_re = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:qdist|\./build/qdist|mpirun|python3|sbatch|\./setup\.sh|"
                        r"bench/\S+\.sh)(?:\s|$)")
    out = []
    for path in DOCS:
        rel = os.path.relpath(path, REPO)
        lines = open(path, encoding="utf-8").read().split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            fence = re.match(r"^```(\w*)", line)
            if fence:
                j = i + 1
                while j < len(lines) and not lines[j].startswith("```"):
                    j += 1
                body = lines[i + 1:j]
                out += fence_examples(rel, i + 2, body, fence.group(1) in ("sh", "bash", "shell"), cmd_re)
                i = j + 1
                continue
            if line.startswith("    ") and cmd_re.match(line.strip()):
                cmd, n = join_continued(lines, i)
                out.append((rel, i + 1, re.sub(r"(^|\s)#.*$", "", cmd).strip(), {}))
                i += n
                continue
            for span in re.findall(r"`((?:qdist|\./build/qdist) (?:quantize|eval|tokenize|export|inspect)[^`]*)`", line):
                if "--model" in span or "--input" in span:
                    out.append((rel, i + 1, span.strip(), {}))
            i += 1
    return out


def join_continued(lines, i):
    cmd, n = "", 0
    while i + n < len(lines):
        piece = lines[i + n].rstrip()
        n += 1
        if piece.endswith("\\"):
            cmd += piece[:-1] + " "
            continue
        cmd += piece
        break
    return cmd, n


def fence_examples(rel, first_lineno, body, is_sh, cmd_re):
    out, env, k = [], {}, 0
    while k < len(body):
        cmd, n = join_continued(body, k)
        if not is_sh:  # a usage synopsis continues on indented lines
            while k + n < len(body) and re.match(r"^\s+\S", body[k + n]) and cmd_re.match(cmd.strip()):
                cmd += " " + body[k + n].strip()
                n += 1
        lineno = first_lineno + k
        k += n
        cmd = re.sub(r"(^|\s)#.*$", "", cmd).strip()
        if not cmd:
            continue
        assign = re.match(r'^([A-Za-z_]\w*)=("([^"]*)"|\S*)$', cmd)
        if is_sh and assign:
            env[assign.group(1)] = assign.group(3) if assign.group(3) is not None else assign.group(2)
            continue
        if is_sh or cmd_re.match(cmd):
            out.append((rel, lineno, cmd, dict(env)))
    return out


def each_format(examples):
    """`--format a|b|c` runs once per format (the other alternatives take their first choice)."""
    out = []
    for rel, lineno, cmd, env in examples:
        m = re.search(r"--format (\S+\|\S+)", cmd)
        if not m or not cmd.startswith("qdist"):
            out.append((rel, lineno, cmd, env))
            continue
        for f in m.group(1).split("|"):
            out.append((rel, lineno, cmd[:m.start(1)] + f + cmd[m.end(1):], env))
    return out


EXAMPLES = each_format(extract())


def readme_quantize_args():
    for rel, _, cmd, _ in EXAMPLES:
        if rel == "README.md" and cmd.startswith("qdist quantize --model"):
            return cmd.split("qdist quantize", 1)[1].strip()
    raise AssertionError("README.md has no `qdist quantize --model ...` example")


def expand(cmd, env):
    for _ in range(3):
        cmd = re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: env.get(m.group(1), m.group(0)), cmd)
    while True:  # innermost first: `[--vllm-tp N [--vllm-ep]]`
        out = re.sub(r"\[([^\[\]]*)\]", lambda m: optional(m.group(1), cmd), cmd)
        if out == cmd:
            return out
        cmd = out


def optional(part, cmd):
    """An optional [part] is included unless OPTIONAL_RULES says when it does not apply."""
    for flag, (needs, _why) in OPTIONAL_RULES.items():
        if part.split()[:1] == [flag] and (needs is None or needs not in cmd):
            return ""
    return part


def first_choice(tok):
    if "|" in tok and not tok.startswith(("'", '"')):
        return tok.split("|")[0]
    return tok


def exists(v):
    return os.path.exists(v) or os.path.exists(os.path.join(REPO, v))


def set_opt(argv, opt, value):
    if opt in argv:
        argv[argv.index(opt) + 1] = value
    else:
        argv += [opt, value]


def runnable(cmd, env, ctx):
    """(env, argv) for one example, after the substitution table."""
    cmd = expand(cmd, env)
    toks = [first_choice(t) for t in shlex.split(cmd)]
    run_env = {}
    while toks and re.match(r"^[A-Z_][A-Z0-9_]*=", toks[0]):
        k, v = toks.pop(0).split("=", 1)
        run_env[k] = v
    prefix = []
    if toks[0] == "mpirun":
        j = 1
        while j < len(toks) and toks[j] not in QDIST_NAMES:
            j += 1
        prefix = toks[:j]
        for flag in ("-n", "-np"):
            if flag in prefix:
                prefix[prefix.index(flag) + 1] = MPI_RANKS
        toks = toks[j:]
    assert toks and toks[0] in QDIST_NAMES, f"not a qdist command: {cmd}"
    sub = toks[1]
    argv = toks[2:]
    if argv[:1] == ["..."]:
        argv = shlex.split(readme_quantize_args()) + argv[1:]
    argv = [a for a in argv if a != "..."]
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            v = argv[i + 1]
            if a in ("--backend", "--device") and v.startswith("cuda"):
                argv[i + 1] = "cpu"                          # no GPU in CI
            elif a in ("--output", "--staging", "--out", "--synthetic"):
                argv[i + 1] = PLACEHOLDERS[a].format(tmp=ctx["tmp"])
            elif a == "--input":
                if sub == "export":
                    argv[i + 1] = ctx["fake"]()
                elif not exists(v):
                    argv[i + 1] = ctx["ids_jsonl"]() if "--decode" in argv else ctx["text_jsonl"]()
            elif a in ("--method", "--bits", "--format", "--vllm-tp") and re.fullmatch(r"[A-Z]", v):
                argv[i + 1] = PLACEHOLDERS[a]
            elif a in PLACEHOLDERS and a not in ("--method", "--bits", "--format") and not exists(v):
                argv[i + 1] = PLACEHOLDERS[a]
            i += 2
            continue
        if sub == "inspect" and not a.startswith("-") and not exists(a):
            argv[i] = POSITIONAL_MODEL
        i += 1
    if sub == "quantize":
        for k, v in SMALL["quantize"].items():
            set_opt(argv, k, v)
        if "--calib" not in argv:
            argv += ["--calib", CALIB]
        if "--resume" in argv:                               # a killed run to resume: stage a first run
            ctx["pre"] = [QDIST, "quantize"] + [a for a in argv if a != "--resume"] + ["--keep-staging",
                                                                                    "--progress", "none"]
            argv += ["--overwrite"]
        if "--format" in argv and argv[argv.index("--format") + 1] == "awq" and "--method" in argv and \
                argv[argv.index("--method") + 1] == "rtn":
            argv += ["--asym"]                               # the awq format needs a zero point
    if sub == "eval":
        for k, v in SMALL["eval"].items():
            set_opt(argv, k, v)
    if sub == "tokenize" and "--calib" in argv:
        for k, v in SMALL["tokenize --calib"].items():
            set_opt(argv, k, v)
    return run_env, [QDIST if p in QDIST_NAMES else p for p in prefix] + [QDIST, sub] + argv


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    d = tmp_path_factory.mktemp("docs-shared")
    made = {}

    def fake():
        if "fake" not in made:
            out = str(d / "fake")
            r = subprocess.run([QDIST, "quantize", "--model", M, "--output", out, "--method", "rtn", "--asym",
                                "--format", "fake", "--quiet"], capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            made["fake"] = out
        return made["fake"]

    def text_jsonl():
        if "text" not in made:
            p = d / "data.jsonl"
            with open(CALIB) as f, open(p, "w") as o:
                for _, line in zip(range(8), f):
                    o.write(json.dumps({"text": json.loads(line)["text"][:400]}) + "\n")
            made["text"] = str(p)
        return made["text"]

    def ids_jsonl():
        if "ids" not in made:
            p = str(d / "ids.jsonl")
            r = subprocess.run([QDIST, "tokenize", "--model", M, "--input", text_jsonl(), "--output", p],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            made["ids"] = p
        return made["ids"]

    return {"fake": fake, "text_jsonl": text_jsonl, "ids_jsonl": ids_jsonl}


def skip_reason(cmd):
    for pat, why in SKIPPED.items():
        if re.search(pat, cmd):
            return why
    return None


def dry_python(script, cmd, env):
    path = os.path.join(REPO, script)
    assert os.path.exists(path), f"{script} does not exist"
    r = subprocess.run([sys.executable, path, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, f"{script} --help: {r.stderr[-2000:]}"
    for opt in re.findall(r"(?<!\S)(--[a-z][\w-]*)", expand(cmd, env)):
        assert opt in r.stdout, f"{script} has no {opt} (its --help: {r.stdout[-1500:]})"


def dry_sh(script, cmd):
    path = os.path.join(REPO, script)
    assert os.path.exists(path), f"{script} does not exist"
    assert subprocess.run(["bash", "-n", path]).returncode == 0
    text = open(path).read()
    labels = set()
    for lab in re.findall(r"^\s*([\w|-]+)\)", text, re.M):
        labels.update(lab.split("|"))
    stages = cmd.split(script, 1)[1].split()
    assert stages, f"{script}: no stage named"
    for s in stages:
        assert s in labels, f"{script} has no stage '{s}' (it has {sorted(labels)})"
    for var in re.findall(r"\b([A-Z][A-Z0-9_]*)=", cmd.split(script)[0]):
        assert var in text or reads_env(var), f"neither {script} nor qdist reads {var}"


def reads_env(var):
    """qdist's own environment variables (QD_*), read by its C or CUDA sources."""
    for d in ("src", "shard", "mpi", "kernels"):
        for root, _, files in os.walk(os.path.join(REPO, d)):
            for f in files:
                if f.endswith((".c", ".h", ".cu")) and var in open(os.path.join(root, f), errors="replace").read():
                    return True
    return False


def dry_sbatch(cmd, env, tmp):
    cmd = expand(cmd, env)
    m = re.search(r"(slurm/\S+\.sbatch)", cmd)
    assert m, cmd
    path = os.path.join(REPO, m.group(1))
    assert os.path.exists(path), f"{m.group(1)} does not exist"
    assert subprocess.run(["bash", "-n", path]).returncode == 0
    text = open(path).read()
    settings = dict(re.findall(r"\b([A-Z_]+)=(\S+)", cmd.split("sbatch")[0]))
    for var in settings:
        assert re.search(r"\$\{?" + var + r"\b", text), f"{m.group(1)} does not read {var}"
    # the qdist options these variables become must pass qdist's own checks (first block only: the
    # checks run on every module before any work; one block keeps the run short)
    flags = dict(SLURM_DEFAULTS)
    flags.update({SLURM_ENV[k]: v for k, v in settings.items() if k in SLURM_ENV})
    recipe = os.path.join(tmp, "layer0.json")
    with open(recipe, "w") as f:
        json.dump({"overrides": [{"match": r"layers\.([1-9]|[0-9][0-9]+)\.", "skip": True}]}, f)
    argv = [QDIST, "quantize", "--model", M, "--calib", CALIB, "--output", os.path.join(tmp, "out"),
            "--recipe", recipe, "--quiet", "--nsamples", "4", "--seqlen", "64"]
    argv += [x for kv in flags.items() for x in kv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"qdist refuses {settings}: {r.stderr}"


def example_id(e):
    m = re.search(r"--format (\S+)", e[2])
    return f"{e[0]}:{e[1]}" + (f"[{m.group(1)}]" if m and "|" not in m.group(1) and e[2].startswith("qdist export")
                               else "")


@pytest.mark.parametrize("example", EXAMPLES, ids=[example_id(e) for e in EXAMPLES])
def test_example(example, shared, tmp_path):
    rel, lineno, cmd, env = example
    why = skip_reason(cmd)
    if why:
        pytest.skip(f"{rel}:{lineno} `{cmd}`: {why}")
    m = re.match(DRY_PYTHON, cmd)
    if m:
        return dry_python(m.group(1), cmd, env)
    m = re.match(r"^(?:[A-Z_][A-Z0-9_]*=\S+\s+)*" + DRY_SH[1:], cmd)
    if m:
        return dry_sh(m.group(1), cmd)
    m = re.match(r"^(?:[A-Z_][A-Z0-9_]*=\S+\s+)*python3 (bench/\S+\.py)", cmd)
    if m:
        return dry_python(m.group(1), cmd.split("python3", 1)[1], env)
    if "sbatch" in cmd.split():
        return dry_sbatch(cmd, env, str(tmp_path))
    ctx = dict(shared, tmp=str(tmp_path))
    run_env, argv = runnable(cmd, env, ctx)
    full_env = dict(os.environ, **run_env)
    if "pre" in ctx:
        r = subprocess.run(ctx["pre"], capture_output=True, text=True, timeout=300, env=full_env)
        assert r.returncode == 0, f"{rel}:{lineno}: staging a run to resume: {r.stderr}"
        shutil_rm(os.path.join(tmp_path, "out"))
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=full_env, cwd=REPO)
    assert r.returncode == 0, (f"{rel}:{lineno} `{cmd}`\nran as: {' '.join(argv)}\nexit {r.returncode}\n"
                               f"{r.stderr[-3000:]}")


def shutil_rm(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def test_examples_found():
    files = {e[0] for e in EXAMPLES}
    assert "README.md" in files and "docs/slurm.md" in files and "docs/quality.md" in files, files
    runnable_n = sum(1 for e in EXAMPLES if not skip_reason(e[2]))
    assert runnable_n >= 20, f"only {runnable_n} examples run: the extraction lost them"


def test_every_skip_is_still_needed():
    for pat in SKIPPED:
        assert any(re.search(pat, e[2]) for e in EXAMPLES), f"SKIPPED entry {pat!r} matches no example"


def test_no_example_refers_to_shared():
    bad = [f"{e[0]}:{e[1]}" for e in EXAMPLES if "shared/fixtures" in e[2] or "../shared" in e[2]]
    assert not bad, f"examples that need ../shared, which a clone does not have: {bad}"
