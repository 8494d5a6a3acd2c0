#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fetch_device_deps.sh - fill the ignored folders a device call carries (run here, where the registries
# are reachable; the GPU machine reaches nothing):
#   .deb  the Debian packages of cJSON, OpenBLAS and LAPACKE that the GPU machine lacks
#         (bench/run_bench.sh unpacks them when the system has none)
#   .whl  llm-compressor 0.14.0.1 and the wheels it needs beyond what the GPU machine has (PyTorch,
#         transformers), for Python 3.12 on manylinux x86-64 (the peer stages: pip install --no-index --target)
# Each folder is skipped when it already holds files. Usage: bench/fetch_device_deps.sh (from anywhere).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "$(ls -A .deb 2>/dev/null)" ]; then
  mkdir -p .deb
  (cd .deb && apt-get download libcjson1 libcjson-dev libopenblas0 libopenblas0-pthread libopenblas-pthread-dev \
     libopenblas-dev liblapacke liblapacke-dev libtmglib3 libtmglib-dev libgfortran5)
fi

if [ -z "$(ls -A .whl 2>/dev/null)" ]; then
  mkdir -p .whl
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl \
    llmcompressor==0.14.0.1 compressed-tensors==0.19.0 loguru pydantic pydantic-core annotated-types \
    typing-inspection datasets==4.8.4 dill multiprocess auto-round==0.15.1
fi
ls .deb .whl | sed 's/^/  /'
