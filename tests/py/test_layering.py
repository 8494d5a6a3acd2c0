"""The layering rules of docs/architecture.md, read from the source tree (no build needed):
(a) the algorithms (src/forward, src/quant, src/eval) include no header that lives in shard/;
(b) no include cycle among the files of src, kernels, shard and mpi;
(c) raw MPI calls only in mpi/bootstrap.c (control plane) and mpi/transport-mpi.c (data plane);
(d) no hand-written C/CUDA file over 500 lines."""
import pathlib
import re

from qdtest import REPO
PRODUCT = ["src", "kernels", "shard", "mpi"]  # what ships in the qdist binary
ALGORITHMS = ["src/forward", "src/quant", "src/eval"]
C_SUFFIXES = (".c", ".h", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources(tops, suffixes=C_SUFFIXES):
    for top in tops:
        for path in sorted((REPO / top).rglob("*")):
            if path.suffix in suffixes and path.is_file():
                yield path


def rel(path):
    return str(path.relative_to(REPO))


def includes(path):
    return INCLUDE.findall(path.read_text(errors="replace"))


def code_only(text):
    """The text without C comments and string literals (a comment may name MPI_Abort)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)


def test_code_only_strips_comments_and_strings():
    assert "MPI_" not in code_only('/* MPI_Abort()s */ x = 1; // MPI_Send\n puts("MPI_Bcast");')
    assert "MPI_Bcast" in code_only("/* a */ MPI_Bcast(p, n, MPI_BYTE, 0, c);")


def include_graph():
    """file -> the files it includes, headers resolved by name among the product's folders"""
    files = list(sources(PRODUCT))
    by_name = {}
    for p in files:
        by_name.setdefault(p.name, []).append(p)
    graph = {}
    for p in files:
        targets = []
        for h in includes(p):
            cands = by_name.get(pathlib.PurePath(h).name, [])
            # a header of the same folder wins, as the compiler's quote search does
            same = [c for c in cands if c.parent == p.parent]
            targets += same[:1] or cands[:1]
        graph[p] = targets
    return graph


def test_algorithms_include_nothing_from_shard():
    shard_headers = {p for p in sources(["shard"], (".h",))}
    assert REPO / "shard/qd-safetensors.h" in shard_headers  # the set is computed from the tree, not listed here
    graph = include_graph()
    found = {}  # the include that crosses into shard/ -> the first chain that reaches it
    for p in sources(ALGORITHMS):
        # directly or through another header (qd-forward.h -> qd-model-handle.h -> ...)
        seen, todo, via = set(), [p], {p: None}
        while todo:
            node = todo.pop()
            for h in graph.get(node, []):
                if h in seen:
                    continue
                seen.add(h)
                via[h] = node
                if h in shard_headers:
                    chain, n = [], h
                    while n is not None:
                        chain.append(rel(n))
                        n = via[n]
                    found.setdefault((via[h], h), " -> ".join(reversed(chain)))
                else:
                    todo.append(h)
    chains = list(found.values())
    assert not chains, "the algorithms read no file; use the model handle (src/model/qd-model-handle.h):\n" + "\n".join(chains)


def find_cycle(graph):
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in graph}
    for root in graph:
        if colour[root] != WHITE:
            continue
        stack = [(root, iter(graph[root]))]
        path = [root]
        colour[root] = GREY
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = BLACK
                stack.pop()
                path.pop()
            elif colour.get(nxt, BLACK) == GREY:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == WHITE:
                colour[nxt] = GREY
                stack.append((nxt, iter(graph[nxt])))
                path.append(nxt)
    return None


def test_find_cycle_finds_one():
    a, b, c = (pathlib.Path(n) for n in "abc")
    assert find_cycle({a: [b], b: [c], c: [a]}) == [a, b, c, a]
    assert find_cycle({a: [b, c], b: [c], c: []}) is None


def test_no_include_cycle():
    graph = include_graph()
    assert len(graph) > 100
    cycle = find_cycle(graph)
    assert cycle is None, "include cycle: " + " -> ".join(rel(p) for p in cycle)


# (c) Raw MPI calls in one place: every other file goes through qd-bootstrap.h or the transport interface.
MPI_FILES = {"mpi/bootstrap.c", "mpi/transport-mpi.c"}


def test_raw_mpi_only_in_bootstrap_and_transport_mpi():
    found = []
    for p in sources(PRODUCT):
        if rel(p) in MPI_FILES:
            continue
        code = code_only(p.read_text(errors="replace"))
        if re.search(r"#\s*include\s*<mpi\.h>", code):
            found.append(f"{rel(p)}: includes <mpi.h>")
        names = sorted(set(re.findall(r"\bMPI_\w+", code)))
        if names:
            found.append(f"{rel(p)}: {', '.join(names)}")
    assert not found, "raw MPI outside mpi/bootstrap.c and mpi/transport-mpi.c:\n" + "\n".join(found)


def test_the_mpi_files_do_call_mpi():
    # the rule above is only meaningful while these two files exist and hold the calls
    for name in MPI_FILES:
        assert re.search(r"\bMPI_\w+\s*\(", code_only((REPO / name).read_text())), name


# (d) Small files with one job. The one exclusion is generated, not hand-written.
MAX_LINES = 500
GENERATED = {"src/tokenizer/unicode-tables.c"}  # written by src/tokenizer/gen-unicode-tables.py


def test_no_c_file_over_500_lines():
    assert all((REPO / g).is_file() for g in GENERATED), "a named exclusion no longer exists: drop it"
    found = []
    for p in sources(PRODUCT + ["tests", "bench"]):
        if rel(p) in GENERATED or "build" in p.relative_to(REPO).parts:
            continue
        n = p.read_text(errors="replace").count("\n")
        if n > MAX_LINES:
            found.append(f"{rel(p)}: {n} lines")
    assert not found, f"C/CUDA files over {MAX_LINES} lines (split them by job):\n" + "\n".join(found)


def test_the_run_is_split_by_phase():
    assert (REPO / "mpi/run.c").exists() and not (REPO / "mpi/quantize-run.c").exists()


def test_quantize_command_parses_flags_then_makes_one_call():
    # the recipe, the flag precedence and the calibration belong to the run (mpi/run-setup.c,
    # src/quant/recipe.c), not to the command line
    code = code_only((REPO / "src/cli/cmd-quantize.c").read_text())
    assert code.count("qd_quantize_command(") == 1
    for name in ("qd-calib.h", "qd_calib_load", "qd_recipe_load", "qd_recipe_apply", "qd_quantize_run("):
        assert name not in code, name
