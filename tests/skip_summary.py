# SPDX-License-Identifier: MIT
"""skip_summary.py BUILD - after `ctest --output-junit ctest-junit.xml`, print what was skipped and why.

CTest tests that did not run: the reason is the test's own last "skip: ..." line (the C tests and
slurm_localhost.py print one before exiting 77), else CTest's message. pytest files: each skipped case's
reason from BUILD/pytest-junit/<file>.xml (tests/CMakeLists.txt passes --junitxml), one line per
distinct reason with a count. Prints "skipped: none" when nothing was skipped. Exit 0 always: the
test run's verdict is ctest's exit status, not this summary's.
"""
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET


def ctest_skips(path):
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.get("status") not in ("notrun", "disabled"):
            continue
        text = case.findtext("system-out") or ""
        said = [l.strip()[len("skip:"):].strip() for l in text.splitlines() if l.strip().startswith("skip:")]
        sk = case.find("skipped")
        reason = said[-1] if said else (sk.get("message") if sk is not None else case.get("status"))
        out.append((case.get("name"), reason))
    return out


def pytest_reason(sk):
    msg = sk.get("message") or ""
    # a skip at collection (module level) puts "('file', line, 'Skipped: why')" in the element's text
    m = re.search(r"Skipped: (.*?)['\"]\)\s*$", sk.text or "", re.S)
    if m:
        return m.group(1)
    return msg[len("Skipped: "):] if msg.startswith("Skipped: ") else msg


def pytest_skips(build, ran):
    out = []
    for path in sorted(glob.glob(os.path.join(build, "pytest-junit", "*.xml"))):
        name = "py/" + os.path.basename(path)[:-4]
        if name not in ran:  # a file left from an earlier run of a test that did not run now
            continue
        reasons = {}
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            out.append((name, f"(unreadable junit file {path}: {e})"))
            continue
        for case in root.iter("testcase"):
            sk = case.find("skipped")
            if sk is not None:
                r = pytest_reason(sk)
                reasons[r] = reasons.get(r, 0) + 1
        for r, n in sorted(reasons.items()):
            out.append((name, r if n == 1 else f"{r} ({n} cases)"))
    return out


def main():
    if len(sys.argv) != 2:
        print("usage: skip_summary.py BUILD", file=sys.stderr)
        return 2
    build = sys.argv[1]
    junit = os.path.join(build, "ctest-junit.xml")
    if not os.path.exists(junit):
        print(f"skipped: unknown (no {junit}: ctest did not write its junit file)")
        return 0
    whole = ctest_skips(junit)
    ran = {c.get("name") for c in ET.parse(junit).getroot().iter("testcase") if c.get("status") == "run"}
    # a pytest file whose every case skipped is a skipped CTest: its junit file says why
    pyfiles = pytest_skips(build, ran | {n for n, _ in whole})
    skips = [(n, r) for n, r in whole if n not in {p for p, _ in pyfiles}] + pyfiles
    if not skips:
        print("skipped: none")
    for name, reason in skips:
        print(f"skipped: {name} — {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
