# SPDX-License-Identifier: MIT
"""A block staged by qdist (shard/h5stage*.c) is ordinary HDF5: h5py reads every dataset and attribute
with the values qdist wrote, in the order it wrote the modules, and `h5dump -H` lists the layout.

qd-stage-writer (tests/shard/stage-writer-tool.c) stages one deterministic block and writes
expected.json with every value it staged; this test compares the two."""
import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

import qdtest as qt


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    d = tmp_path_factory.mktemp("stage") / "staging"
    out = subprocess.run([qt.tool("tests", "shard", "qd-stage-writer"), str(d), "5"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip()
    assert path.endswith("block-00005.h5") and os.path.exists(path)
    with open(d / "expected.json") as f:
        expected = json.load(f)
    return path, expected, d


def test_h5py_reads_values(staged):
    path, exp, _ = staged
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == b"qdist-stage-1"
        assert int(f.attrs["block"]) == exp["block"] == 5
        assert int(f.attrs["rank"]) == exp["rank"]
        assert float(f.attrs["time_s"]) == exp["time_s"]
        # modules keep the order qdist staged them in (creation order is tracked)
        assert list(f["modules"]) == [m["name"] for m in exp["modules"]]
        for m in exp["modules"]:
            g = f["modules"][m["name"]]
            n, k, groups = m["N"], m["K"], m["G"]
            assert g["codes"].dtype == np.uint8 and g["codes"].shape == (n, k)
            assert g["scales"].dtype == np.float32 and g["scales"].shape == (groups, n)
            assert g["zeros"].dtype == np.int32 and g["zeros"].shape == (groups, n)
            assert g["g_idx"].dtype == np.int32 and g["g_idx"].shape == (k,)
            assert all(g[ds].fletcher32 for ds in ("codes", "scales", "zeros", "g_idx"))
            np.testing.assert_array_equal(g["codes"][()], np.array(m["codes"], np.uint8).reshape(n, k))
            # exact: the JSON holds the float32 values printed to round-trip precision
            np.testing.assert_array_equal(g["scales"][()], np.array(m["scales"], np.float32).reshape(groups, n))
            np.testing.assert_array_equal(g["zeros"][()], np.array(m["zeros"], np.int32).reshape(groups, n))
            np.testing.assert_array_equal(g["g_idx"][()], np.array(m["g_idx"], np.int32))
            assert int(g["codes"][()].max()) < 2 ** m["bits"]
            for a in ("bits", "group_size", "sym"):
                assert int(g.attrs[a]) == m[a], a
            for a in ("loss", "damp", "time_s"):
                assert float(g.attrs[a]) == m[a], a
            assert g.attrs["fallback"].decode() == m["fallback"]
        assert list(f["tensors"]) == [t["name"] for t in exp["tensors"]]
        for t in exp["tensors"]:
            ds = f["tensors"][t["name"]]
            assert ds.dtype == np.float32 and list(ds.shape) == t["shape"]
            np.testing.assert_array_equal(ds[()], np.array(t["data"], np.float32))


def test_h5dump_header(staged):
    path, exp, _ = staged
    h5dump = shutil.which("h5dump")
    assert h5dump, "h5dump not installed (setup.sh installs the Debian package hdf5-tools)"
    out = subprocess.run([h5dump, "-H", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for m in exp["modules"]:
        assert f'GROUP "{m["name"]}"' in text
    for ds in ("codes", "scales", "zeros", "g_idx"):
        assert f'DATASET "{ds}"' in text
    assert "H5T_STD_U8LE" in text and "H5T_IEEE_F32LE" in text and "H5T_STD_I32LE" in text
    props = subprocess.run([h5dump, "-p", "-H", path], capture_output=True, text=True, timeout=60).stdout
    assert props.count("CHECKSUM FLETCHER32") == 4 * len(exp["modules"]) + len(exp["tensors"])
    m0 = exp["modules"][0]
    assert f"SIMPLE {{ ( {m0['N']}, {m0['K']} ) / ( {m0['N']}, {m0['K']} ) }}" in text
    # and the data itself through h5dump: the first module's g_idx
    out = subprocess.run([h5dump, "-d", f"/modules/{m0['name']}/g_idx", "-y", "-w", "0", path],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    body = out.stdout.split("DATA {", 1)[1].split("}", 1)[0]
    assert [int(x) for x in body.replace(",", " ").split()] == m0["g_idx"]


def test_no_tmp_left_and_fingerprint(staged):
    _, _, d = staged
    names = sorted(os.listdir(d))
    assert names == ["block-00005.h5", "expected.json", "fingerprint.json", "lock"]
    with open(d / "fingerprint.json") as f:
        fp = json.load(f)
    assert fp["format"] == "qdist-staging-1" and "qdist_version" in fp["fingerprint"]
