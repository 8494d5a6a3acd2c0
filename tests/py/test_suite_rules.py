# SPDX-License-Identifier: MIT
"""The Python suite's own rule (tests/py/qdtest.py): a package of tests/requirements.txt that is missing fails
the test that needs it; only the documented optional GPTQModel (and optimum, which it loads through) may be
skipped by import. Read from the test sources, no build needed."""
import ast
import re

from qdtest import REPO

OPTIONAL = {"gptqmodel", "optimum"}  # docs/formats.md: the optional heavy build


def importorskips():
    """(file, line, module) of every pytest.importorskip call under tests/"""
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and
                    node.func.attr == "importorskip" and node.args and isinstance(node.args[0], ast.Constant)):
                yield path.relative_to(REPO), node.lineno, node.args[0].value


def test_required_packages_are_imported_not_skipped():
    found = list(importorskips())
    assert {m for _, _, m in found} == OPTIONAL, found  # the optional ones are still guarded
    required = {re.split(r"[=<>\[ ]", ln.strip())[0].lower().replace("-", "_")
                for ln in (REPO / "tests" / "requirements.txt").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")}
    assert not OPTIONAL & required
    assert {"torch", "transformers", "compressed_tensors", "safetensors", "h5py", "numpy"} <= required
