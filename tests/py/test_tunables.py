"""The environment tunables are declared in one table (src/core/qd-param.h, QD_PARAMS), read through
qd_param_str only, and each one is documented in docs/tunables.md."""
import re

from qdtest import REPO
PRODUCT = ["src", "kernels", "shard", "mpi"]  # what ships in the qdist binary


def table():
    text = (REPO / "src/core/qd-param.h").read_text()
    return re.findall(r'X\((\w+), "(QD_\w+)"', text)


def test_table_is_not_empty_and_names_are_unique():
    rows = table()
    assert len(rows) >= 8
    assert len({env for _, env in rows}) == len(rows)
    assert all(env == "QD_" + ident for ident, env in rows)


def test_every_tunable_is_documented():
    doc = (REPO / "docs/tunables.md").read_text()
    missing = [env for _, env in table() if f"`{env}`" not in doc]
    assert not missing, f"docs/tunables.md lacks {missing}"
    documented = set(re.findall(r"^\| `(QD_\w+)`", doc, re.M))
    assert documented == {env for _, env in table()}, "docs/tunables.md lists a variable the table lacks"


def test_no_getenv_outside_the_table():
    found = []
    for top in PRODUCT:
        for path in (REPO / top).rglob("*"):
            if path.suffix not in (".c", ".h", ".cu", ".cuh") or path.name == "qd-param.c":
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if re.search(r"\bgetenv\s*\(", line):
                    found.append(f"{path.relative_to(REPO)}:{n}")
    assert not found, f"getenv outside src/core/qd-param.c: {found}"


def test_op_profile_counts_what_the_run_did(tmp_path):
    """QD_OP_PROFILE: one gptq_sweep per quantized Linear (the report's module count), a line per GEMM
    shape, and the same checkpoint as without it (timing changes nothing that is computed)."""
    import json
    import os

    from qdtest import PYCODE, qdist
    args = ["quantize", "--backend", "cpu", "--model", PYCODE, "--method", "gptq", "--calib", PYCODE / "calib.jsonl",
            "--nsamples", "4", "--seqlen", "64", "--progress", "none", "--format", "compressed-tensors"]
    plain = qdist(*args, "--output", tmp_path / "plain")
    assert "op profile" not in plain.stderr
    r = qdist(*args, "--output", tmp_path / "prof", env={**os.environ, "QD_OP_PROFILE": "1"})
    sweeps = re.search(r"op profile: gptq_sweep\s+(\d+) calls\s+([\d.]+) s", r.stderr)
    assert sweeps, r.stderr[-2000:]
    modules = json.loads((tmp_path / "prof/qdist_report.json").read_text())["modules"]
    assert int(sweeps.group(1)) == len(modules) > 0
    assert re.search(r"op profile: gemm B\^T M<=2\^\d+ N=\d+ K=\d+\s+\d+ calls", r.stderr)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "prof" / name).read_bytes(), name
