"""Layering rules of the source tree, checked by reading the files (no build needed).

- Raw MPI calls live in one place: mpi/bootstrap.c (control plane) and mpi/transport-mpi.c (data
  plane). Every other file goes through qd-bootstrap.h or the transport interface.
- The run (mpi/run*.c) is split by phase: no file of it is over 500 lines.
"""
import os
import pathlib
import re

REPO = pathlib.Path(os.environ.get("QD_REPO", pathlib.Path(__file__).resolve().parents[2]))
PRODUCT = ["src", "kernels", "shard", "mpi"]  # what ships in the qdist binary
MPI_FILES = {"mpi/bootstrap.c", "mpi/transport-mpi.c"}


def sources():
    for top in PRODUCT:
        for path in sorted((REPO / top).rglob("*")):
            if path.suffix in (".c", ".h", ".cu", ".cuh"):
                yield path.relative_to(REPO).as_posix(), path.read_text(errors="replace")


def code_only(text):
    """The text without C comments and string literals (a comment may name MPI_Abort)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)


def test_code_only_strips_comments_and_strings():
    assert "MPI_" not in code_only('/* MPI_Abort()s */ x = 1; // MPI_Send\n puts("MPI_Bcast");')
    assert "MPI_Bcast" in code_only("/* a */ MPI_Bcast(p, n, MPI_BYTE, 0, c);")


def test_raw_mpi_only_in_bootstrap_and_transport_mpi():
    found = []
    for rel, text in sources():
        if rel in MPI_FILES:
            continue
        code = code_only(text)
        if re.search(r"#\s*include\s*<mpi\.h>", code):
            found.append(f"{rel}: includes <mpi.h>")
        names = sorted(set(re.findall(r"\bMPI_\w+", code)))
        if names:
            found.append(f"{rel}: {', '.join(names)}")
    assert not found, "raw MPI outside mpi/bootstrap.c and mpi/transport-mpi.c:\n" + "\n".join(found)


def test_the_mpi_files_do_call_mpi():
    # the rule above is only meaningful while these two files exist and hold the calls
    for rel in MPI_FILES:
        assert re.search(r"\bMPI_\w+\s*\(", code_only((REPO / rel).read_text())), rel


def test_run_files_under_500_lines():
    long = [f"{p.name}: {n}" for p in sorted((REPO / "mpi").glob("run*.[ch]"))
            if (n := len(p.read_text().splitlines())) > 500]
    assert not long, f"mpi/run*.c over 500 lines: {long}"
    assert (REPO / "mpi/run.c").exists() and not (REPO / "mpi/quantize-run.c").exists()
