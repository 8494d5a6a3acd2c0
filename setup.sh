#!/usr/bin/env bash
# qdist set-up for a fresh Debian 12 / Ubuntu 22.04+ machine (as root, or with sudo available).
#   ./setup.sh demo   install what is missing, build, quantize the bundled model on CPU, evaluate it
#   ./setup.sh test   install what is missing (incl. the Python test references), build, run all tests,
#                     then the bad-input tests again against an ASan/UBSan build (QD_ASAN_BUILD)
# Environment: QD_BUILD (build directory, default ./build), QD_ASAN_BUILD (default $QD_BUILD-asan),
# QD_JOBS (parallel build jobs).
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-}
case "$mode" in demo|test) ;; *) echo "usage: ./setup.sh demo|test" >&2; exit 2 ;; esac

build=${QD_BUILD:-build}
jobs=${QD_JOBS:-$(nproc)}
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi

pkgs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libcjson-dev
      libopenblas-dev liblapacke-dev)
[ "$mode" = test ] && pkgs+=(python3 python3-venv python3-pip clang slurm-wlm munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake_args=(-S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "$mode" = test ]; then
  # the references the tests compare against (transformers, tokenizers, safetensors, ...) live in a venv
  venv="$build/venv"
  if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$build"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r tests/requirements.txt
  cmake_args+=(-DPython3_EXECUTABLE="$PWD/$venv/bin/python")
fi

cmake "${cmake_args[@]}"
cmake --build "$build" -j "$jobs"

if [ "$mode" = test ]; then
  # OpenMPI refuses to run as root without these; the tests start ranks on this machine only
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  # ctest's summary, then what was skipped and why: tests/skip_summary.py reads ctest's junit file (64 KB
  # of each passed or skipped test's output, not the default 1 KB: a skip's reason can come late) and
  # each pytest file's. The exit status stays ctest's.
  rm -rf "$build/pytest-junit" "$build/ctest-junit.xml"
  rc=0
  (cd "$build" && ctest --output-on-failure -j "$jobs" --output-junit ctest-junit.xml \
     --test-output-size-passed 65536) || rc=$?
  "$venv/bin/python" tests/skip_summary.py "$build" || true
  # the bad-input tests once more against an ASan/UBSan build (CPU only; only qdist and its libraries
  # are built there); LeakSanitizer is opt-in (tests/badinput/CMakeLists.txt says why; with it, Open
  # MPI's start-up allocations are suppressed by tests/badinput/lsan.supp). Either ctest failing fails
  # the script.
  asan="${QD_ASAN_BUILD:-$build-asan}"
  cmake -S . -B "$asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQD_SANITIZE=ON -DPython3_EXECUTABLE="$PWD/$venv/bin/python"
  cmake --build "$asan" -j "$jobs" --target qdist
  (cd "$asan" && ctest --output-on-failure -j "$jobs" -L badinput) || rc=$?
  exit $rc
fi

# demo: quantize the bundled model on CPU (GPTQ, 4 bits, groups of 128), evaluate it and the original
model=fixtures/pycode-16m
out=${QD_DEMO_OUT:-out/pycode-16m-gptq-w4g128}
"$build/qdist" inspect "$model"
"$build/qdist" quantize --model "$model" --output "$out" --overwrite --calib "$model/calib.jsonl" \
  --nsamples 128 --seqlen 512 --method gptq --bits 4 --group-size 128 --format gptq --progress lines
echo "perplexity on $model/eval.txt (first 16 windows of 1024 tokens):"
printf '  original (bf16):  '; "$build/qdist" eval --model "$model" --data "$model/eval.txt" --seqlen 1024 --max-windows 16
printf '  GPTQ W4 g128:     '; "$build/qdist" eval --model "$out" --data "$model/eval.txt" --seqlen 1024 --max-windows 16
echo "qdist: the quantized checkpoint is in $out (GPTQ v1, loads in vLLM and transformers)"
