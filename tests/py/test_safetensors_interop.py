# SPDX-License-Identifier: MIT
"""qdist's safetensors reader and writer against the `safetensors` package (huggingface/safetensors).

Direction 1: files written by the package (numpy API for every numpy dtype it supports, the raw
serialize API for bf16 / fp8 / fp4) are read by qdist: `qdist inspect --json` reports the same
names, dtypes and shapes. Direction 2: qdist's writer (driven by the qd-st-copy test helper, which
re-writes a checkpoint through qdist's reader and writer, sharded or not) produces files the package
loads with byte-identical values, the index naming each tensor's shard.
"""
import json
import os
import subprocess

import numpy as np
import pytest
import safetensors
from safetensors.numpy import save_file, load_file

import qdtest as qt

CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
    "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 32,
}

# the package's numpy dtype table is the reference for which names mean which numpy types
NUMPY_TYPES = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16, "I32": np.int32,
    "U32": np.uint32, "I64": np.int64, "U64": np.uint64, "F16": np.float16, "F32": np.float32,
    "F64": np.float64, "C64": np.complex64,
}
# dtypes numpy cannot hold: written through safetensors.serialize with raw bytes
RAW_TYPES = {"BF16": ("bfloat16", 16), "F8_E4M3": ("float8_e4m3fn", 8), "F8_E5M2": ("float8_e5m2", 8),
             "F8_E8M0": ("float8_e8m0fnu", 8), "F8_E4M3FNUZ": ("float8_e4m3fnuz", 8),
             "F8_E5M2FNUZ": ("float8_e5m2fnuz", 8), "F4": ("float4_e2m1fn_x2", 4)}


def numpy_tensors(rng):
    out = {}
    for i, (name, t) in enumerate(NUMPY_TYPES.items()):
        shape = [(3, 5), (7,), (2, 3, 4), (1, 1), (4, 2)][i % 5]
        if t is np.bool_:
            a = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif t is np.complex64:
            a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
        elif np.issubdtype(t, np.floating):
            a = rng.standard_normal(shape).astype(t)
        else:
            info = np.iinfo(t)
            a = rng.integers(info.min, info.max, size=shape, dtype=t, endpoint=True)
        out[f"t.{name}"] = a
    out["scalar"] = np.array(2.5, dtype=np.float32)
    out["empty"] = np.zeros((0, 3), dtype=np.float16)
    return out


def write_model(path, tensors):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(CONFIG, f)
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})


def inspect_json(path):
    r = qt.qdist("inspect", path, "--json", timeout=60)
    return json.loads(r.stdout)


def raw_file(path, rng):
    """A model whose tensors use the dtypes numpy lacks; returns {name: (dtype, shape, bytes)}."""
    assert hasattr(safetensors, "TensorSpec"), "safetensors without the TensorSpec raw serialize API: install " \
        "tests/requirements.txt's version"
    specs, keep, want = {}, [], {}
    for i, (name, (fw, bits)) in enumerate(RAW_TYPES.items()):
        shape = [4, 6] if i % 2 else [10]
        numel = int(np.prod(shape))
        buf = rng.integers(0, 256, size=numel * bits // 8, dtype=np.uint8)
        keep.append(buf)
        spec_shape = list(shape)
        if fw == "float4_e2m1fn_x2":  # the package takes the storage shape (2 values per byte)
            spec_shape[-1] //= 2
        specs[f"r.{name}"] = safetensors.TensorSpec(dtype=fw, shape=spec_shape, data_ptr=buf.ctypes.data,
                                                    data_len=buf.nbytes)
        want[f"r.{name}"] = (name, shape, buf.tobytes())
    data = safetensors.serialize(specs, metadata={"format": "pt"})
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(CONFIG, f)
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(data)
    # the package's own view of what it wrote is the reference
    got = {k: (v["dtype"], v["shape"], bytes(v["data"])) for k, v in safetensors.deserialize(data)}
    assert got == want
    return want


def test_qdist_reads_numpy_files(tmp_path):
    tensors = numpy_tensors(np.random.default_rng(1))
    write_model(str(tmp_path), tensors)
    info = inspect_json(str(tmp_path))
    by_name = {t["name"]: t for t in info["tensors"]}
    assert set(by_name) == set(tensors)
    rev = {np.dtype(v): k for k, v in NUMPY_TYPES.items()}
    for name, a in tensors.items():
        t = by_name[name]
        assert t["dtype"] == rev[a.dtype], name
        assert t["shape"] == list(a.shape), name
        assert t["bytes"] == a.nbytes, name
    assert info["total_parameters"] == sum(a.size for a in tensors.values())


def test_qdist_reads_raw_dtypes(tmp_path):
    want = raw_file(str(tmp_path), np.random.default_rng(2))
    info = inspect_json(str(tmp_path))
    by_name = {t["name"]: t for t in info["tensors"]}
    assert set(by_name) == set(want)
    for name, (dtype, shape, data) in want.items():
        assert by_name[name]["dtype"] == dtype
        assert by_name[name]["shape"] == shape
        assert by_name[name]["bytes"] == len(data)


def need_copy_tool():
    return qt.tool("tests", "shard", "qd-st-copy")


def shards_of(out):
    """(files, weight_map) of a qdist output directory, checking the layout rules on the way (beside
    the shards: the index, and the .qdist-output marker that lets --overwrite replace the directory)."""
    index = os.path.join(out, "model.safetensors.index.json")
    if not os.path.exists(index):
        assert sorted(os.listdir(out)) == [".qdist-output", "model.safetensors"]
        return ["model.safetensors"], None
    with open(index) as f:
        idx = json.load(f)
    files = sorted(set(idx["weight_map"].values()))
    n = len(files)
    assert files == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert sorted(os.listdir(out)) == sorted(files + [".qdist-output", "model.safetensors.index.json"])
    return files, idx


def check_layout(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    assert n % 8 == 0
    assert header["__metadata__"] == {"format": "pt"}


@pytest.mark.parametrize("max_shard", [10**9, 200])
def test_writer_output_loads_in_safetensors(tmp_path, max_shard):
    tool = need_copy_tool()
    tensors = numpy_tensors(np.random.default_rng(3))
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    write_model(src, tensors)
    r = subprocess.run([tool, src, out, str(max_shard)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    files, idx = shards_of(out)
    if max_shard < 1000:
        assert len(files) > 1
        assert idx["metadata"]["total_size"] == sum(a.nbytes for a in tensors.values())
    loaded = {}
    for fname in files:
        path = os.path.join(out, fname)
        check_layout(path)
        part = load_file(path)
        if idx:
            for k in part:
                assert idx["weight_map"][k] == fname
        loaded.update(part)
    assert set(loaded) == set(tensors)
    for name, a in tensors.items():
        b = loaded[name]
        assert b.dtype == a.dtype and b.shape == a.shape, name
        assert a.tobytes() == b.tobytes(), name
    # and qdist reads its own sharded output back through the index
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f)
    info = inspect_json(out)
    assert info["sharded"] == (idx is not None)
    assert [f["name"] for f in info["files"]] == files
    assert {t["name"]: t["file"] for t in info["tensors"]} == (idx["weight_map"] if idx else
                                                              {k: "model.safetensors" for k in tensors})


def test_writer_output_raw_dtypes(tmp_path):
    tool = need_copy_tool()
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    want = raw_file(src, np.random.default_rng(4))
    r = subprocess.run([tool, src, out, "64"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    files, idx = shards_of(out)
    got = {}
    for fname in files:
        with open(os.path.join(out, fname), "rb") as f:
            data = f.read()
        check_layout(os.path.join(out, fname))
        for k, v in safetensors.deserialize(data):
            got[k] = (v["dtype"], v["shape"], bytes(v["data"]))
    assert got == want


def test_qdist_output_equals_input_bytes_when_unsharded(tmp_path):
    """Re-writing a file the package wrote reproduces every tensor's bytes (order may differ)."""
    tool = need_copy_tool()
    tensors = {"b": np.arange(12, dtype=np.float32).reshape(3, 4), "a": np.arange(5, dtype=np.int64)}
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    write_model(src, tensors)
    subprocess.run([tool, src, out, "1000000"], check=True, timeout=60)
    loaded = load_file(os.path.join(out, "model.safetensors"))
    for k, v in tensors.items():
        assert np.array_equal(loaded[k], v)
