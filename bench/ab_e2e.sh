#!/bin/bash
# SPDX-License-Identifier: MIT
# ab_e2e.sh BASE_SRC - the 8B-shaped GPTQ run (run_bench.sh e2e) of this tree and of another source tree
# (BASE_SRC: a `git archive` of an earlier commit) on the same synthetic model in one device call, so a
# change's cost is measured against its base on the same machine. Run after `run_bench.sh e2e` (it
# leaves the model and the dependencies in /tmp). Prints both phase tables.
set -u
cd "$(dirname "$0")/.."
base=$1; nb=${E2E_BLOCKS:-4}; m=/tmp/synth-llama3-8b-$nb; OUT=${OUT:-$PWD/bench-out}
[ -f $m/config.json ] || { echo "ab_e2e: run bench/run_bench.sh e2e first ($m missing)"; exit 1; }
H=${QD_BENCH_BUILD:-build-dev}
flags=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DQD_WITH_FUZZ=OFF)
for v in CJSON_INCLUDE_DIR CJSON_LIBRARY CBLAS_INCLUDE_DIR BLAS_LIBRARY LAPACKE_INCLUDE_DIR LAPACKE_LIBRARY \
         LAPACK_LIBRARY NCCL_LIBRARY CMAKE_C_FLAGS; do  # the dependencies run_bench.sh found for this tree
  val=$(grep "^$v:" $H/CMakeCache.txt | cut -d= -f2-); [ -n "$val" ] && flags+=("-D$v=$val")
done
cmake -S $base -B /tmp/ab-base "${flags[@]}" > $OUT/ab-cmake.log 2>&1 && cmake --build /tmp/ab-base -j16 --target qdist > $OUT/ab-build.log 2>&1 \
  || { echo "ab_e2e: base build failed"; tail -20 $OUT/ab-cmake.log $OUT/ab-build.log; exit 1; }
for side in base head; do
  q=/tmp/ab-base/qdist; [ $side = head ] && q=$H/qdist
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 $q quantize --backend cuda --model $m --calib $m/calib.jsonl \
    --output /tmp/ab-out-$side --format gptq --progress none --quiet --method gptq --bits 4 --group-size 128 \
    --nsamples 128 --seqlen 2048 --overwrite ${E2E_EXTRA:-} || echo "ab_e2e: $side run failed"
  cp /tmp/ab-out-$side/qdist_report.json $OUT/ab-$side.json 2>/dev/null; rm -rf /tmp/ab-out-$side
done
python3 bench/e2e_phases.py "base=$OUT/ab-base.json" "head=$OUT/ab-head.json"
