#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run_bench.sh - one device call: build, check, benchmark. Run from the repository root on the GPU machine.
#
#   bench/run_bench.sh [STAGE...]      stages (default: test gptq8b torch8b):
#     test      build and run the backend op test (tests/kernels/test-backend-ops.c: every backend vs the CPU)
#     gptq8b    bench-gptq-layer on Llama-3-8B layer shapes, QD_CUDA_MATH fp32, tf32 and bf16
#     gptq70b   bench-gptq-layer on Llama-3-70B layer shapes (one block; all 80 have these shapes), fp32 and tf32
#     qwen7b    bench-gptq-layer on Qwen2.5-7B layer shapes, tf32
#     torch8b   the torch reference GPTQ (bench/torch_gptq_ref.py) on the same Llama-3-8B shapes
#     e2e       gen_synthetic.py Llama-3-8B (E2E_BLOCKS blocks) + `qdist quantize --backend cuda` end to end
#               (E2E_WRAP: a command put in front of qdist, e.g. "nsys profile --stats=true -o /tmp/e2e";
#               E2E_EXTRA: more qdist flags); prints the per-phase table of the report (bench/e2e_phases.py)
#     e2e-awq   the same with --method awq (128 x 512 tokens)
#     e2e-70b   GPTQ on the first E2E_70B_BLOCKS (2) blocks of Llama-3-70B shapes
#     fmt-speed the weight formats of issue 20 on the e2e model (Llama-3-8B shapes, E2E_BLOCKS blocks), `qdist
#               quantize --backend cuda` each, compressed-tensors export: W4A16 GPTQ (the reference row),
#               fp8-dynamic, fp8-block, nvfp4a16, mxfp4 by RTN, then fp8-dynamic / nvfp4a16 by GPTQ; prints a markdown table to $OUT/fmt-speed.md
#               (FMT_SCHEMES: "scheme:method ..." to pick rows; FMT_TIMEOUT per row, default 600 s)
#     cuda-resume  fixture on CUDA: device install == host dequant (QD_CHECK_INSTALL), kill + resume identical; then
#               every installing method/scheme (rtn, gptq --act-order, awq, w8a8-int8, fp8-dynamic gptq, nvfp4a16)
#               with the install checked; each prints how its installs were made (kept on the device / uploaded /
#               host) and how many differ (expect 0)
#     peer      bench/peer/peer_bench.py: qdist (default flags) vs llm-compressor on the fixture (PEER_METHODS,
#               default rtn,gptq,gptq-act,awq; ppl of every export by one evaluator), plus qdist with --math fp32
#               on the same ids (the fp32-vs-default quality rows); needs .whl (llm-compressor's wheels)
#     peer2     the same on a second trained model of another architecture (Qwen2-style, trained in the call by
#               fixtures/train/train_fixture.py B, PEER2_TRAIN_S seconds, kept in /tmp/fx/B for later calls on the
#               same machine; PEER2_WAIT: wait for a training job started before this script), default and --math
#               fp32 rows (PEER_FP32=0: default rows only). PEER_METHODS takes any of peer_bench.py's methods or
#               groups: "issue20" is every issue-20 pair (fp8-dynamic[-gptq], fp8-block, w8a8-int8[-gptq][-sq],
#               fp8-static, fp8-kv, nvfp4a16[-gptq], nvfp4, mxfp4a16[-gptq], mxfp4), too many for one 10-minute call:
#               split them over calls with PEER_TAG (a suffix of /tmp/peer-B* and $OUT/peer-B*), e.g.
#               PEER_METHODS=fp8-dynamic,fp8-block,w8a8-int8,w8a8-int8-gptq,w8a8-int8-sq-gptq PEER_TAG=-i20a PEER_FP32=0.
#               Wheels in .whl-eval (e.g. compressed-tensors 0.20.1) are put first on the evaluator's path only
#     peer8b    the same on synthetic Llama-3-8B shapes (PEER8B_BLOCKS=32 blocks, 128 x 2048, PEER8B_METHODS=gptq;
#               AWQ rows with PEER8B_AWQ_BLOCKS blocks at 128 x 512 when PEER8B_AWQ_BLOCKS is set), timing only
#     dp1gpu    bench/dp_1gpu.py: data-parallel ranks P = 1, 2 sharing the GPU (MPI collectives): exact numerics
#               byte-identical GPTQ/AWQ, default-numerics ppl, codes and per-phase times; the NCCL table with one
#               rank (DP1GPU_ARGS: more flags)
#     equality  bench/cuda_equality.py: the fixture quantized on cpu and cuda, codes >= 99.9% equal, ppl within 0.1%;
#               first in exact numerics (the checked mode: its result is the stage's), then fast (informational;
#               EQUALITY_FAST=0 skips it; EQUALITY_ARGS: more cuda_equality.py flags, e.g. "--methods gptq")
#     moe-quality  the MoE quality table (issue 19 item 5): trains fixtures/train/train_fixture.py C (Qwen3-MoE,
#               8 experts, top-2, ~27M parameters; PEER3_TRAIN_S=150 s on the GPU, corpus QD_TRAIN_CORPUS_CHARS
#               default 30 M characters, work folder /tmp/fx-moe; skipped when /tmp/fx-moe/C/model exists), then
#               bench/moe_bench.py quality: qdist --backend cuda GPTQ W4 g128 and AWQ W4 g128, each with
#               --moe-calibration routed and all, RTN, GPTQ on a copy with one expert made unreachable (its router row -1e4 x a direction the
#               router's inputs point along; the report's routed-token count and fallback printed), each scored
#               by `qdist eval` (32 windows of 1024) with the original; llm-compressor GPTQ as a peer row when
#               its wheels (.whl) install (its failure is a row, not a stop; MOEQ_PEER_TIMEOUT 90 s). The prep of C (and the
#               Mixtral block of moe-speed) start in the background before the build. MOEQ_ARGS: more moe_bench.py flags
#     moe-speed    the MoE speed table (issue 19 item 6): gen_synthetic.py --arch mixtral-8x7b --blocks 1, 128 x 2048
#               ids; qdist GPTQ W4 g128 (--moe-calibration MOES_CALS, default "all", the peer's mode; "all,routed"
#               adds the routed run) wall + phases, then llm-compressor GPTQ (moe_calibrate_all_experts=True, its
#               default) on the same ids, MOES_PEER_TIMEOUT (150) s; a timed-out peer gives a lower bound ">= Nx"; prints peer wall / qdist wall
#               Both MoE stages print markdown to $OUT/moe-quality.md and $OUT/moe-speed.md; their rc lines
#               say "moe-... rc=1" when a qdist row failed.
#     moe-profile  after moe-speed / dsv3-speed: the same blocks again with QD_OP_PROFILE=1 (MOEP_CAL, default all),
#               the op table to $OUT/moe-profile-*.log (a diagnostic: synchronizes around every op)
#     dsv3-speed   issue 19 item 6: one DeepSeek-V3-shaped MoE block (gen_synthetic.py --arch deepseek-v3 --blocks 1:
#               an FP8 source, e4m3 + 128x128 weight_scale_inv, hidden 7168, MLA, 256 routed experts of 2048, top-8,
#               n_group 8 / topk_group 4, one shared expert; ~15 GB on disk with the embedding and lm_head), 128 x 2048
#               ids; qdist GPTQ W4 g128 compressed-tensors with --moe-calibration DSV3_CALS (default "all,routed";
#               "all" alone halves the stage), wall + phases, then the 58 MoE blocks of DeepSeek-V3 projected on 1
#               and 8 GPUs (bench/moe_project.py, its cost model in its header); no peer row. The block is generated
#               in the background before the build into /tmp/synth-deepseek-v3-1 (kept between calls; remade when
#               DSV3_GEN_ARGS change); the stage is skipped, saying so, with less than DSV3_MIN_FREE_GB (45) free
#               on /tmp (source + staging + one export at a time: each export is deleted after its run, its report
#               kept in $OUT). DSV3_GEN_ARGS: more gen_synthetic.py flags (a smoke test: "--hidden 512 --inter 256
#               --experts 16 --heads 4 --q-lora 128 --kv-lora 128 --vocab 8192 --nsamples 8 --seqlen 128" with
#               DSV3_ARGS="--nsamples 8 --seqlen 128"); DSV3_QUANT_TIMEOUT (420 s) per qdist run; DSV3_ARGS: more
#               moe_bench.py flags (e.g. "--backend cpu"). Prints markdown to $OUT/dsv3-speed.md.
# Missing build dependencies (cJSON, OpenBLAS, LAPACKE) are unpacked from .deb/*.deb when the system lacks
# them; CMake is tried first, a direct nvcc/gcc build of the few libraries the benchmarks need second.
# Logs go to $OUT (or ./bench-out) and a summary table is printed last.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/bench-out}
mkdir -p "$OUT"
STAGES=${*:-test gptq8b torch8b}
B=${QD_BENCH_BUILD:-build-dev}
J=${QD_BENCH_JOBS:-16}
DEPS=/tmp/qd-deps
ML=x86_64-linux-gnu
export PYTHONUNBUFFERED=1

log() { echo "== $(date -u +%H:%M:%S) $*"; }
# cuda-resume: how the QD_CHECK_INSTALL-checked installs of a log were made (qctx.c's check_install)
installs() {
  echo "  installs checked: $(grep -c 'codes kept on the device)' "$1") kept on the device," \
       "$(grep -c 'codes uploaded)' "$1") uploaded, $(grep -c 'dequantized on the host)' "$1") host;" \
       "$(grep -c 'differs from the host' "$1") differ (expect $2)"
}

log "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null)"
# ---- dependencies
EXTRA_INC="" EXTRA_LIB=""
if ls .deb/*.deb >/dev/null 2>&1; then
  mkdir -p $DEPS
  for f in .deb/*.deb; do dpkg -x "$f" $DEPS; done
fi
have_hdr() { [ -e /usr/include/$1 ] || [ -e /usr/include/$ML/$1 ] || [ -e /usr/include/cjson/$1 ] || [ -e /usr/include/openblas/$1 ]; }
CJ_INC=/usr/include/cjson; CJ_LIB=$(ls /usr/lib/$ML/libcjson.so 2>/dev/null)
CJ_CFLAGS=""
if [ -z "$CJ_LIB" ]; then
  CJ_INC=$DEPS/usr/include/cjson; CJ_LIB=$DEPS/usr/lib/$ML/libcjson.so
  # sources include both <cJSON.h> and <cjson/cJSON.h>: a directory holding only the cjson/ folder
  mkdir -p /tmp/qd-cjinc && ln -sfn $DEPS/usr/include/cjson /tmp/qd-cjinc/cjson; CJ_CFLAGS="-I/tmp/qd-cjinc"
fi
BL_INC=""; BL_LIB=$(ls /usr/lib/$ML/libopenblas.so 2>/dev/null)
if [ -z "$BL_LIB" ]; then
  BL_INC=$(dirname "$(ls $DEPS/usr/include/$ML/cblas*.h $DEPS/usr/include/$ML/openblas-pthread/cblas.h 2>/dev/null | head -1)")
  BL_LIB=$(ls $DEPS/usr/lib/$ML/openblas-pthread/libopenblas.so* 2>/dev/null | head -1)
fi
LA_INC=""; LA_LIB=$(ls /usr/lib/$ML/liblapacke.so 2>/dev/null); LP_LIB=$(ls /usr/lib/$ML/liblapack.so 2>/dev/null)
if [ -z "$LA_LIB" ]; then LA_INC=$DEPS/usr/include; LA_LIB=$(ls $DEPS/usr/lib/$ML/liblapacke.so* | head -1); fi
if [ -z "$LP_LIB" ]; then LP_LIB=$(ls $DEPS/usr/lib/$ML/openblas-pthread/liblapack.so* $DEPS/usr/lib/$ML/lapack/liblapack.so* 2>/dev/null | head -1); fi
# only our binaries see the unpacked libraries (python's torch/numpy keep the system's)
RUN="env LD_LIBRARY_PATH=$DEPS/usr/lib/$ML:$DEPS/usr/lib/$ML/openblas-pthread:$DEPS/usr/lib/$ML/lapack:${LD_LIBRARY_PATH:-}"
NCCL=$(ls /usr/local/cuda/lib64/libnccl.so /usr/lib/$ML/libnccl.so 2>/dev/null | head -1)
if [ -z "$NCCL" ]; then NCCL=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib", "libnccl.so.2"))' 2>/dev/null); fi
log "deps: cjson=$CJ_LIB openblas=$BL_LIB lapacke=$LA_LIB lapack=$LP_LIB nccl=$NCCL"
log "mpi: $(which mpicc 2>/dev/null) hdf5: $(ls /usr/include/hdf5/serial/hdf5.h /usr/include/hdf5.h 2>/dev/null | head -1)"

# ---- CPU-only preparations of the MoE stages, started now so that they overlap the build: the corpus and
# tokenizer of model C (moe-quality) and the synthetic Mixtral block (moe-speed)
case " $STAGES " in *" moe-quality "*)
  if [ ! -f /tmp/fx-moe/C/model/config.json ] && [ ! -f /tmp/fx-moe/C/train.u16 ]; then
    log "moe-quality: prep of model C in the background"
    ( QD_TRAIN_DIR=/tmp/fx-moe QD_TRAIN_CORPUS_CHARS=${QD_TRAIN_CORPUS_CHARS:-30000000} timeout 300 \
      python3 fixtures/train/train_fixture.py prep C >"$OUT/prep-C.log" 2>&1; echo $? >/tmp/fx-moe-prep.rc ) &
    moe_prep_pid=$!
  fi;;
esac
case " $STAGES " in *" moe-speed "*)
  if [ ! -f /tmp/synth-mixtral-8x7b-1/config.json ]; then
    log "moe-speed: generating one Mixtral-8x7B block in the background"
    ( timeout 300 python3 bench/gen_synthetic.py --arch mixtral-8x7b --blocks 1 /tmp/synth-mixtral-8x7b-1 \
      >"$OUT/gen-mixtral.log" 2>&1; echo $? >/tmp/synth-mixtral.rc ) &
    moe_gen_pid=$!
  fi;;
esac

case " $STAGES " in *" dsv3-speed "*)
  dsv3=/tmp/synth-deepseek-v3-1
  if [ ! -f $dsv3/config.json ] || [ "$(cat $dsv3/gen-args.txt 2>/dev/null)" != "${DSV3_GEN_ARGS:-}" ]; then
    rm -rf $dsv3   # a partial or differently shaped block
    free_gb=$(df -BG --output=avail /tmp 2>/dev/null | tail -1 | tr -dc 0-9)
    if [ "${free_gb:-0}" -lt "${DSV3_MIN_FREE_GB:-45}" ]; then
      dsv3_skip="only ${free_gb:-?} GB free on /tmp, ${DSV3_MIN_FREE_GB:-45} needed"; log "dsv3-speed: $dsv3_skip"
    else
      log "dsv3-speed: generating one DeepSeek-V3 block in the background ${DSV3_GEN_ARGS:-}"
      ( timeout 900 python3 bench/gen_synthetic.py --arch deepseek-v3 --blocks 1 ${DSV3_GEN_ARGS:-} $dsv3 \
        >"$OUT/gen-dsv3.log" 2>&1 && printf '%s' "${DSV3_GEN_ARGS:-}" >$dsv3/gen-args.txt; echo $? >/tmp/synth-dsv3.rc ) &
      dsv3_gen_pid=$!
    fi
  fi;;
esac

# ---- build
built=""
cmake_build() {
  cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DQD_WITH_FUZZ=OFF ${CJ_CFLAGS:+"-DCMAKE_C_FLAGS=$CJ_CFLAGS"} \
    -DCJSON_INCLUDE_DIR=$CJ_INC -DCJSON_LIBRARY=$CJ_LIB ${BL_INC:+-DCBLAS_INCLUDE_DIR=$BL_INC} -DBLAS_LIBRARY=$BL_LIB \
    ${LA_INC:+-DLAPACKE_INCLUDE_DIR=$LA_INC} -DLAPACKE_LIBRARY=$LA_LIB -DLAPACK_LIBRARY=$LP_LIB \
    ${NCCL:+-DNCCL_LIBRARY=$NCCL} >"$OUT/cmake.log" 2>&1 || return 1
  grep -q "CUDA backend: ON" "$OUT/cmake.log" || { log "cmake: CUDA backend OFF"; return 1; }
  cmake --build $B -j$J --target kernels-test-backend-ops >"$OUT/build.log" 2>&1 || return 1
  cp $B/tests/kernels-test-backend-ops $B/test-backend-ops
  LIBS="$B/libqd_backends.a $B/libqd_kernels_cuda.a $B/libqd_kernels.a $B/libqd_core.a"
}
direct_build() { # the libraries the op test and bench need, without CMake (no MPI/HDF5 needed)
  mkdir -p $B/direct && rm -f $B/direct/*.o
  local inc="-Isrc/core -Ikernels -Ikernels/cpu -Ikernels/cuda -Ikernels/registry -I$CJ_INC $CJ_CFLAGS ${BL_INC:+-I$BL_INC} ${LA_INC:+-I$LA_INC}"
  local cf="-O2 -std=c17 -D_GNU_SOURCE -DQD_VERSION=\"0.1.0\" -DQD_HAVE_CUDA=1"
  for f in src/core/*.c kernels/*.c kernels/cpu/*.c kernels/registry/*.c; do gcc $cf $inc -c $f -o $B/direct/$(basename $f .c).o || return 1; done
  ls kernels/cuda/*.cu | xargs -P $J -I{} sh -c 'nvcc -O2 -std=c++17 -gencode=arch=compute_90,code=sm_90 '"$inc"' -c {} -o '$B'/direct/$(basename {} .cu).cu.o' || return 1
  ar rcs $B/direct/libqd_all.a $B/direct/*.o
  LIBS="$B/direct/libqd_all.a"
  gcc $cf $inc -Itests tests/kernels/test-backend-ops.c tests/kernels/backend-*.c $LIBS $LINK -o $B/test-backend-ops
}
LINK="-L/usr/local/cuda/lib64 -lcusolver -lcublas -lcublasLt -lcudart $LA_LIB $LP_LIB $BL_LIB $CJ_LIB -lstdc++ -lm -lpthread -ldl"
log "build (cmake)"
if [ -z "${QD_BENCH_DIRECT:-}" ] && cmake_build; then built=cmake; else
  log "cmake build failed (tail of logs below); direct build"; tail -5 "$OUT/cmake.log" "$OUT/build.log" 2>/dev/null
  direct_build >"$OUT/direct.log" 2>&1 && built=direct || { tail -30 "$OUT/direct.log"; exit 1; }
fi
gcc -O2 -std=c17 -D_GNU_SOURCE -DQD_HAVE_CUDA=1 -Isrc/core -Ikernels -I/usr/local/cuda/include bench/bench-gptq-layer.c \
  $LIBS $LINK -o $B/bench-gptq-layer || exit 1
log "built ($built)"

# qdist built, wrapped (/tmp/qdist-wrap sees the unpacked libraries) and llm-compressor's wheels installed
# into /tmp/site; without the wheels MOE_PEER is --no-peer (the qdist rows still run)
moe_setup() {
  [ -n "${moe_ready:-}" ] && return 0
  cmake --build $B -j$J --target qdist >"$OUT/build-qdist.log" 2>&1 || { log "qdist build failed"; tail -20 "$OUT/build-qdist.log"; return 1; }
  printf '#!/bin/sh\nexec %s %s "$@"\n' "$RUN" "$PWD/$B/qdist" >/tmp/qdist-wrap && chmod +x /tmp/qdist-wrap
  MOE_PEER=""
  if ! ls .whl/*.whl >/dev/null 2>&1 || ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/site .whl/*.whl >"$OUT/pip.log" 2>&1; then
    log "llm-compressor wheels missing or not installable: no peer rows"; tail -3 "$OUT/pip.log" 2>/dev/null; MOE_PEER=--no-peer
  fi
  moe_ready=1
}

# ---- stages
for s in $STAGES; do
  case $s in
  test)
    log "op test"; $RUN $B/test-backend-ops 2>&1 | tee "$OUT/test-backend-ops.log" | grep -v "^  " ; echo "rc=${PIPESTATUS[0]}";;
  gptq8b)
    for m in ${GPTQ_MATHS:-fp32 tf32 bf16}; do log "bench llama3-8b $m"; QD_CUDA_MATH=$m $RUN $B/bench-gptq-layer --model llama3-8b --reps 1 2>&1 | tee -a "$OUT/bench-8b.log"; done;;
  gptq70b)
    for m in tf32 fp32; do log "bench llama3-70b $m"; QD_CUDA_MATH=$m $RUN $B/bench-gptq-layer --model llama3-70b --reps 1 2>&1 | tee -a "$OUT/bench-70b.log"; done;;
  qwen7b)
    log "bench qwen2.5-7b tf32"; QD_CUDA_MATH=tf32 $RUN $B/bench-gptq-layer --model qwen2.5-7b --reps 1 2>&1 | tee -a "$OUT/bench-qwen.log";;
  torch8b)
    log "torch reference llama3-8b"; timeout 300 python3 bench/torch_gptq_ref.py --model llama3-8b 2>&1 | tee -a "$OUT/torch-8b.log";;
  peer|peer8b|peer2)
    if [ -z "${peer_ready:-}" ]; then
      cmake --build $B -j$J --target qdist >"$OUT/build-qdist.log" 2>&1 || { log "qdist build failed"; tail -20 "$OUT/build-qdist.log"; continue; }
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >"$OUT/pip.log" 2>&1 || { log "wheels: install failed"; tail -5 "$OUT/pip.log"; continue; }
      # qdist sees the unpacked libraries, python (torch, llm-compressor) the system's
      printf '#!/bin/sh\nexec %s %s "$@"\n' "$RUN" "$PWD/$B/qdist" >/tmp/qdist-wrap && chmod +x /tmp/qdist-wrap
      # the evaluator may take another compressed-tensors than llm-compressor pins (.whl-eval: e.g. 0.20.1,
      # which reads every issue-20 format); its wheels go first on the evaluator's path only
      peer_eval=""
      if ls .whl-eval/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-eval \
          .whl-eval/*.whl >>"$OUT/pip.log" 2>&1 || { log "wheels (.whl-eval): install failed"; tail -5 "$OUT/pip.log"; continue; }
        printf '#!/bin/sh\nPYTHONPATH=/tmp/site-eval:/tmp/site exec python3 "$@"\n' >/tmp/py-eval && chmod +x /tmp/py-eval
        peer_eval="--eval-python /tmp/py-eval"
      fi
      peer_ready=1
    fi
    if [ $s = peer ]; then
      fx=fixtures/pycode-16m; pm=${PEER_METHODS:-rtn,gptq,gptq-act,awq}
      log "peer: fixture, qdist default vs llm-compressor ($pm)"
      PYTHONPATH=/tmp/site python3 bench/peer/peer_bench.py --qdist /tmp/qdist-wrap --model $fx --calib $fx/calib.jsonl \
        --nsamples 64 --seqlen 512 --methods $pm --eval $fx/eval.txt --eval-windows 32 --out /tmp/peer-fx $peer_eval 2>"$OUT/peer-fx.err" | tee "$OUT/peer-fx.md"
      log "peer: fixture, qdist --math fp32 ($pm)"
      PYTHONPATH=/tmp/site python3 bench/peer/peer_bench.py --qdist /tmp/qdist-wrap --model $fx --calib $fx/calib.jsonl \
        --nsamples 64 --seqlen 512 --methods $pm --eval $fx/eval.txt --eval-windows 32 --out /tmp/peer-fx32 --no-peer $peer_eval \
        --qdist-args "--math fp32" 2>"$OUT/peer-fx32.err" | tee "$OUT/peer-fx32.md"
      cp /tmp/peer-fx/peer.json "$OUT/peer-fx.json"; cp /tmp/peer-fx32/peer.json "$OUT/peer-fx32.json"
    elif [ $s = peer2 ]; then
      # the second trained model (fixtures/train/train_fixture.py B: Qwen2-style, q/k/v biases, untied
      # lm_head), trained here unless /tmp/fx/B/model exists or a job started before run_bench.sh is
      # training it (PEER2_WAIT=file that appears when it is done)
      fb=/tmp/fx/B/model
      if [ -n "${PEER2_WAIT:-}" ]; then while [ ! -e "$PEER2_WAIT" ]; do sleep 2; done; fi
      if [ ! -f $fb/config.json ]; then
        log "peer2: train model B (${PEER2_TRAIN_S:-180} s)"
        QD_TRAIN_CORPUS_CHARS=${QD_TRAIN_CORPUS_CHARS:-80000000} python3 fixtures/train/train_fixture.py prep B >"$OUT/prep-B.log" 2>&1 &&
          python3 fixtures/train/train_fixture.py train B ${PEER2_TRAIN_S:-180} >"$OUT/train-B.log" 2>&1 || { log "peer2: training failed"; tail -20 "$OUT"/*-B.log; continue; }
      fi
      cp /tmp/fx/B/train_result.json "$OUT/train-B-result.json" 2>/dev/null
      python3 -c 'import json,sys; print("\n\n".join(json.loads(l)["text"] for l in open("/tmp/fx/eval.jsonl")))' >/tmp/fx/eval.txt
      pm=${PEER_METHODS:-rtn,gptq,gptq-act,awq}; t=${PEER_TAG:-}
      log "peer2: model B, qdist default vs llm-compressor ($pm)"
      PYTHONPATH=/tmp/site python3 bench/peer/peer_bench.py --qdist /tmp/qdist-wrap --model $fb --calib /tmp/fx/calib.jsonl \
        --nsamples 64 --seqlen 512 --methods $pm --eval /tmp/fx/eval.txt --eval-windows 32 --out /tmp/peer-B$t $peer_eval \
        2>"$OUT/peer-B$t.err" | tee "$OUT/peer-B$t.md"
      cp /tmp/peer-B$t/peer.json "$OUT/peer-B$t.json"; cp $fb/config.json "$OUT/model-B-config.json"
      if [ "${PEER_FP32:-1}" != 0 ]; then
        log "peer2: model B, qdist --math fp32 ($pm)"
        PYTHONPATH=/tmp/site python3 bench/peer/peer_bench.py --qdist /tmp/qdist-wrap --model $fb --calib /tmp/fx/calib.jsonl \
          --nsamples 64 --seqlen 512 --methods $pm --eval /tmp/fx/eval.txt --eval-windows 32 --out /tmp/peer-B32$t --no-peer \
          $peer_eval --qdist-args "--math fp32" 2>"$OUT/peer-B32$t.err" | tee "$OUT/peer-B32$t.md"
        cp /tmp/peer-B32$t/peer.json "$OUT/peer-B32$t.json"
      fi
    else
      nb=${PEER8B_BLOCKS:-32}; m=/tmp/synth-llama3-8b-$nb
      [ -f $m/config.json ] || { rm -rf /tmp/synth-llama3-8b-*; log "peer8b: generate llama3-8b, $nb blocks"; python3 bench/gen_synthetic.py --arch llama3-8b --blocks $nb $m || continue; }
      dd if=/dev/zero of=/tmp/dd-probe bs=64M count=64 oflag=direct 2>&1 | tail -1 | sed 's/^/dd 4.3 GB write: /' | tee "$OUT/dd.txt"; rm -f /tmp/dd-probe
      log "peer8b: ${PEER8B_METHODS:-gptq}, 128 x 2048"
      PYTHONPATH=/tmp/site python3 bench/peer/peer_bench.py --qdist /tmp/qdist-wrap --model $m --calib $m/calib.jsonl \
        --nsamples 128 --seqlen 2048 --methods ${PEER8B_METHODS:-gptq} --out /tmp/peer-8b 2>"$OUT/peer-8b.err" | tee "$OUT/peer-8b.md"
      cp /tmp/peer-8b/peer.json "$OUT/peer-8b.json"; cp /tmp/peer-8b/qdist-gptq/qdist_report.json "$OUT/peer-8b-qdist-report.json" 2>/dev/null
      if [ -n "${PEER8B_AWQ_BLOCKS:-}" ]; then
        ma=/tmp/synth-llama3-8b-awq-${PEER8B_AWQ_BLOCKS}
        python3 bench/gen_synthetic.py --arch llama3-8b --blocks $PEER8B_AWQ_BLOCKS --nsamples 128 --seqlen 512 $ma >/dev/null || continue
        log "peer8b: awq, $PEER8B_AWQ_BLOCKS blocks, 128 x 512"
        PYTHONPATH=/tmp/site python3 bench/peer/peer_bench.py --qdist /tmp/qdist-wrap --model $ma --calib $ma/calib.jsonl \
          --nsamples 128 --seqlen 512 --methods awq --out /tmp/peer-8b-awq 2>"$OUT/peer-8b-awq.err" | tee "$OUT/peer-8b-awq.md"
      fi
    fi;;
  moe-quality)
    moe_setup || continue
    W3=/tmp/fx-moe; fc=$W3/C/model
    if [ ! -f $fc/config.json ]; then
      if [ -n "${moe_prep_pid:-}" ]; then wait $moe_prep_pid; prc=$(cat /tmp/fx-moe-prep.rc 2>/dev/null || echo missing)
      elif [ -f $W3/C/train.u16 ]; then prc=0
      else
        QD_TRAIN_DIR=$W3 QD_TRAIN_CORPUS_CHARS=${QD_TRAIN_CORPUS_CHARS:-30000000} timeout 300 \
          python3 fixtures/train/train_fixture.py prep C >"$OUT/prep-C.log" 2>&1; prc=$?
      fi
      [ "$prc" = 0 ] || { log "moe-quality: prep of C FAILED (rc=$prc)"; tail -20 "$OUT/prep-C.log"; continue; }
      log "moe-quality: train model C (${PEER3_TRAIN_S:-150} s); $(grep -h '^docs\|tokens' "$OUT/prep-C.log" | tr '\n' ' ')"
      QD_TRAIN_DIR=$W3 QD_TRAIN_EVAL_WINDOWS=${QD_TRAIN_EVAL_WINDOWS:-50} timeout $(( ${PEER3_TRAIN_S:-150} + 180 )) \
        python3 fixtures/train/train_fixture.py train C ${PEER3_TRAIN_S:-150} >"$OUT/train-C.log" 2>&1
      rc=$?
      [ $rc = 0 ] && [ -f $fc/config.json ] || { log "moe-quality: training C FAILED (rc=$rc)"; tail -20 "$OUT/train-C.log"; continue; }
      grep "step" "$OUT/train-C.log" | tail -2
    fi
    cp $W3/C/train_result.json "$OUT/train-C-result.json" 2>/dev/null; cp $fc/config.json "$OUT/model-C-config.json"
    cat $W3/C/train_result.json 2>/dev/null; echo
    python3 -c 'import json,sys; print("\n\n".join(json.loads(l)["text"] for l in open(sys.argv[1])))' $W3/eval.jsonl >$W3/eval.txt
    log "moe-quality: qdist GPTQ routed/all, RTN, unreachable expert; llm-compressor GPTQ ${MOE_PEER:+(skipped)}"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONPATH=/tmp/site timeout 360 python3 bench/moe_bench.py quality --qdist /tmp/qdist-wrap --model $fc \
      --calib $W3/calib.jsonl --eval $W3/eval.txt --out /tmp/moe-q --peer-timeout ${MOEQ_PEER_TIMEOUT:-90} $MOE_PEER \
      ${MOEQ_ARGS:-} 2>"$OUT/moe-quality.err" | tee "$OUT/moe-quality.md"
    echo "moe-quality rc=${PIPESTATUS[0]}"; grep "^== " "$OUT/moe-quality.err" | grep -v "quantize --backend\|peer-job" | tail -12
    for r in /tmp/moe-q/q*/qdist_report.json; do cp $r "$OUT/moe-q-$(basename $(dirname $r))-report.json"; done 2>/dev/null
    cp /tmp/moe-q/llmc-gptq.log "$OUT/moe-q-llmc.log" 2>/dev/null
    rm -rf /tmp/moe-q/q* /tmp/moe-q/dead-src;;
  moe-speed)
    moe_setup || continue
    m=/tmp/synth-mixtral-8x7b-1
    [ -n "${moe_gen_pid:-}" ] && { wait $moe_gen_pid; [ "$(cat /tmp/synth-mixtral.rc 2>/dev/null)" = 0 ] || { log "moe-speed: gen_synthetic FAILED"; tail -5 "$OUT/gen-mixtral.log"; continue; }; }
    [ -f $m/config.json ] || { log "moe-speed: generate one Mixtral-8x7B block"; timeout 300 python3 bench/gen_synthetic.py --arch mixtral-8x7b --blocks 1 $m || { log "moe-speed: gen_synthetic FAILED"; continue; }; }
    log "moe-speed: qdist GPTQ (${MOES_CALS:-all}) vs llm-compressor GPTQ ${MOE_PEER:+(skipped)}, 128 x 2048"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONPATH=/tmp/site timeout 400 python3 bench/moe_bench.py speed \
      --qdist /tmp/qdist-wrap --model $m --calib $m/calib.jsonl --moe-calibrations ${MOES_CALS:-all} --quant-timeout 180 \
      --peer-timeout ${MOES_PEER_TIMEOUT:-150} --out /tmp/moe-s $MOE_PEER ${MOES_ARGS:-} 2>"$OUT/moe-speed.err" | tee "$OUT/moe-speed.md"
    echo "moe-speed rc=${PIPESTATUS[0]}"; grep "^== " "$OUT/moe-speed.err" | tail -6
    for r in /tmp/moe-s/qdist-*/qdist_report.json; do cp $r "$OUT/moe-s-$(basename $(dirname $r))-report.json"; done 2>/dev/null
    cp /tmp/moe-s/llmc-gptq.log "$OUT/moe-s-llmc.log" 2>/dev/null
    rm -rf /tmp/moe-s/qdist-*;;
  dsv3-speed)
    [ -n "${dsv3_skip:-}" ] && { log "dsv3-speed: skipped: $dsv3_skip"; echo "dsv3-speed rc=skipped"; continue; }
    moe_setup || continue
    m=/tmp/synth-deepseek-v3-1
    if [ -n "${dsv3_gen_pid:-}" ]; then
      wait $dsv3_gen_pid
      [ "$(cat /tmp/synth-dsv3.rc 2>/dev/null)" = 0 ] && [ -f $m/config.json ] ||
        { log "dsv3-speed: gen_synthetic FAILED"; tail -5 "$OUT/gen-dsv3.log"; echo "dsv3-speed rc=gen"; continue; }
    fi
    tail -1 "$OUT/gen-dsv3.log" 2>/dev/null
    cals=${DSV3_CALS:-all,routed}; n=$(echo $cals | tr ',' '\n' | wc -l)
    log "dsv3-speed: qdist GPTQ W4 g128 ($cals), one DeepSeek-V3 block, 58 blocks projected"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout $(( n * ${DSV3_QUANT_TIMEOUT:-420} + 120 )) \
      python3 bench/moe_bench.py speed --qdist /tmp/qdist-wrap --model $m --calib $m/calib.jsonl --moe-calibrations $cals \
      --quant-timeout ${DSV3_QUANT_TIMEOUT:-420} --no-peer --project-blocks 58 --drop-outputs --out /tmp/dsv3-s \
      ${DSV3_ARGS:-} 2>"$OUT/dsv3-speed.err" | tee "$OUT/dsv3-speed.md"
    echo "dsv3-speed rc=${PIPESTATUS[0]}"; grep "^== " "$OUT/dsv3-speed.err" | tail -4
    for f in /tmp/dsv3-s/qdist-*-report.json; do cp $f "$OUT/dsv3-$(basename $f)"; done 2>/dev/null
    for f in /tmp/dsv3-s/qdist-*.log; do grep -v "gptq w4" $f | tail -30 >"$OUT/dsv3-$(basename $f)"; done 2>/dev/null
    rm -rf /tmp/dsv3-s/qdist-*;;
  moe-profile)
    # QD_OP_PROFILE runs of the blocks moe-speed and dsv3-speed generated (run after them): every backend op
    # timed between synchronizations, by op and GEMM shape (docs/tunables.md); slower than the timed runs
    for m in /tmp/synth-mixtral-8x7b-1 /tmp/synth-deepseek-v3-1; do
      [ -f $m/config.json ] || { log "moe-profile: $m not generated (run moe-speed / dsv3-speed first)"; continue; }
      t=$(basename $m); log "moe-profile: $t, GPTQ W4 g128 --moe-calibration ${MOEP_CAL:-all}, QD_OP_PROFILE=1"
      QD_OP_PROFILE=1 timeout ${MOEP_TIMEOUT:-400} /tmp/qdist-wrap quantize --backend cuda --model $m --output /tmp/moe-p \
        --calib $m/calib.jsonl --nsamples 128 --seqlen 2048 --bits 4 --group-size 128 --format compressed-tensors \
        --overwrite --progress none --method gptq --moe-calibration ${MOEP_CAL:-all} > "$OUT/moe-profile-$t.log" 2>&1
      echo "moe-profile $t rc=$?"; grep -E "op profile|in [0-9.]+ s ->" "$OUT/moe-profile-$t.log" | head -40
      cp /tmp/moe-p/qdist_report.json "$OUT/moe-profile-$t-report.json" 2>/dev/null; rm -rf /tmp/moe-p
    done;;
  dp1gpu)
    # data-parallel ranks sharing the one GPU through the MPI collectives (bench/dp_1gpu.py, issue 18 item 6b)
    cmake --build $B -j$J --target qdist mpi-test-collective-nccl >"$OUT/build-qdist.log" 2>&1 || { log "qdist build failed"; tail -20 "$OUT/build-qdist.log"; continue; }
    log "data-parallel ranks on one GPU"
    $RUN python3 bench/dp_1gpu.py --qdist $B/qdist --collective-test $B/tests/mpi-test-collective-nccl ${DP1GPU_ARGS:-} 2>&1 | tee "$OUT/dp1gpu.md"
    echo "dp1gpu rc=${PIPESTATUS[0]}";;
  equality)
    cmake --build $B -j$J --target qdist >"$OUT/build-qdist.log" 2>&1 || { log "qdist build failed"; tail -20 "$OUT/build-qdist.log"; continue; }
    log "fixture equality cpu vs cuda, exact numerics (checked)"
    $RUN python3 bench/cuda_equality.py --qdist $B/qdist --numerics exact ${EQUALITY_ARGS:-} 2>&1 | tee "$OUT/equality.log" | grep -v '^\$ '
    echo "equality (exact) rc=${PIPESTATUS[0]}"
    [ "${EQUALITY_FAST:-1}" = 0 ] && continue   # EQUALITY_FAST=0: the checked (exact) run only
    log "fixture equality cpu vs cuda, fast numerics (informational)"
    $RUN python3 bench/cuda_equality.py --qdist $B/qdist --numerics fast ${EQUALITY_ARGS:-} 2>&1 | tee "$OUT/equality-fast.log" | grep -v '^\$ '
    echo "equality (fast, informational) rc=${PIPESTATUS[0]}";;
  e2e|e2e-awq|e2e-70b)
    # e2e: GPTQ on Llama-3-8B shapes; e2e-awq: AWQ on the same model; e2e-70b: GPTQ on the first
    # E2E_70B_BLOCKS (2) blocks of Llama-3-70B shapes. E2E_EXTRA: more qdist flags (e.g. --gpu-mem 38).
    if grep -q "not implemented yet" src/cli/cmd-quantize.c; then log "e2e: qdist quantize is still a placeholder in this tree: skipped"; continue; fi
    if [ ! -x $B/qdist ] || [ -z "${e2e_built:-}" ]; then
      log "e2e: build qdist"; cmake --build $B -j$J --target qdist >"$OUT/build-qdist.log" 2>&1 || { log "qdist build failed"; tail -20 "$OUT/build-qdist.log"; continue; }
      e2e_built=1
    fi
    arch=llama3-8b; nb=${E2E_BLOCKS:-4}; meth=gptq; tag=8b
    [ $s = e2e-awq ] && { meth=awq; tag=8b-awq; }
    [ $s = e2e-70b ] && { arch=llama3-70b; nb=${E2E_70B_BLOCKS:-2}; tag=70b; }
    m=/tmp/synth-$arch-$nb
    if [ ! -f $m/config.json ]; then
      rm -rf /tmp/synth-$arch-*   # one synthetic model on the disk at a time
      log "e2e: generate $arch shapes, first $nb blocks"; python3 bench/gen_synthetic.py --arch $arch --blocks $nb $m || continue
    fi
    sflags="--nsamples 128"; [ $meth = gptq ] && sflags="$sflags --seqlen 2048"
    ( peak=0; while sleep 0.5; do u=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1); [ "${u:-0}" -gt $peak ] && peak=$u && echo $peak > /tmp/gpu-peak-$tag; echo $peak > "$OUT/gpu-peak-$tag"; done ) &
    mon=$!
    t0=$(date +%s.%N)
    log "e2e-$tag: qdist quantize --backend cuda --method $meth --math ${E2E_MATH:-auto} ${E2E_EXTRA:-}"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout ${E2E_TIMEOUT:-240} \
      $RUN ${E2E_WRAP:-} $B/qdist quantize --backend cuda --math ${E2E_MATH:-auto} \
      --model $m --calib $m/calib.jsonl --output /tmp/synth-w4-$tag --format $meth --progress lines \
      --method $meth --bits 4 --group-size 128 $sflags --overwrite ${E2E_EXTRA:-} 2>&1 | tee "$OUT/e2e-$tag.log" | tail -25
    t1=$(date +%s.%N); kill $mon
    echo "E2E $arch ($nb blocks) $meth w4 g128: wall $(python3 -c "print(round($t1 - $t0, 1))") s, GPU memory peak $(cat /tmp/gpu-peak-$tag) MiB (nvidia-smi)" | tee -a "$OUT/e2e-$tag.log"
    cp /tmp/synth-w4-$tag/qdist_report.json "$OUT/e2e-report-$tag.json" 2>/dev/null
    rm -rf /tmp/synth-w4-$tag
    python3 bench/e2e_phases.py "$tag=$OUT/e2e-report-$tag.json" | tee -a "$OUT/e2e-phases.md";;
  fmt-speed)
    [ -x $B/qdist ] || cmake --build $B -j$J --target qdist >"$OUT/build-qdist.log" 2>&1 || { log "qdist build failed"; continue; }
    nb=${E2E_BLOCKS:-4}; m=/tmp/synth-llama3-8b-$nb
    if [ ! -f $m/config.json ]; then
      rm -rf /tmp/synth-llama3-8b-* /tmp/synth-llama3-70b-*
      log "fmt-speed: generate llama3-8b shapes, first $nb blocks"; python3 bench/gen_synthetic.py --arch llama3-8b --blocks $nb $m || continue
    fi
    rows="${FMT_SCHEMES:-wna16:gptq fp8-dynamic:rtn fp8-block:rtn nvfp4a16:rtn mxfp4:rtn fp8-dynamic:gptq nvfp4a16:gptq}"
    { echo "### fmt-speed: Llama-3-8B shapes, $nb blocks, qdist quantize --backend cuda, compressed-tensors export"
      echo
      echo "| scheme | method | wall (s) | export (MB) | rc | note |"
      echo "|---|---|---|---|---|---|"; } > "$OUT/fmt-speed.md"
    for row in $rows; do
      sc=${row%%:*}; meth=${row##*:}; o=/tmp/fmt-$sc-$meth; rm -rf $o $o.qdist-staging
      cal=""; [ $meth = gptq ] && cal="--calib $m/calib.jsonl --nsamples 128 --seqlen 2048"
      wf=""; [ $sc = wna16 ] && wf="--bits 4 --group-size 128"
      log "fmt-speed: $sc $meth"
      t0=$(date +%s.%N)
      OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout ${FMT_TIMEOUT:-600} $RUN $B/qdist quantize \
        --backend cuda --model $m --output $o --format compressed-tensors --scheme $sc --method $meth $wf $cal \
        --progress none >"$OUT/fmt-$sc-$meth.log" 2>&1
      rc=$?; t1=$(date +%s.%N)
      mb=$(du -sm $o 2>/dev/null | cut -f1); note=$(grep -m1 "error" "$OUT/fmt-$sc-$meth.log" | cut -c1-120)
      echo "| $sc | $meth | $(python3 -c "print(round($t1 - $t0, 1))") | ${mb:--} | $rc | ${note} |" >> "$OUT/fmt-speed.md"
      rm -rf $o $o.qdist-staging
    done
    cat "$OUT/fmt-speed.md";;
  cuda-resume)
    # the trained fixture on CUDA: every device-installed weight checked against the host's dequantization
    # (QD_CHECK_INSTALL), and a SIGKILL after block 3 + --resume byte-identical to the uninterrupted run
    [ -x $B/qdist ] || cmake --build $B -j$J --target qdist >"$OUT/build-qdist.log" 2>&1 || { log "qdist build failed"; continue; }
    f=fixtures/pycode-16m
    q="$B/qdist quantize --backend cuda --model $f --calib $f/calib.jsonl --method gptq --format gptq --nsamples 32 --seqlen 512 --overwrite --progress none"
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    log "cuda-resume: uninterrupted run, install checked"
    QD_CHECK_INSTALL=1 $RUN $q --output /tmp/cr-a >"$OUT/cuda-resume.log" 2>&1; echo "rc=$? installs bit-identical: $(grep -c 'bit-identical to the host' "$OUT/cuda-resume.log") (expect 56)"
    installs "$OUT/cuda-resume.log" "56 kept, 0 uploaded, 0 host"
    grep -i "error\|differs" "$OUT/cuda-resume.log" | head -5
    rm -rf /tmp/cr-b /tmp/cr-b.qdist-staging
    QD_INJECT_KILL=0:3 $RUN $q --output /tmp/cr-b >>"$OUT/cuda-resume.log" 2>&1; echo "killed run rc=$?"
    # the resume replays the staged blocks from their host codes: the uploaded install, checked too
    QD_CHECK_INSTALL=1 $RUN $q --output /tmp/cr-b --resume >"$OUT/cuda-resume-b.log" 2>&1; echo "resume rc=$?"
    installs "$OUT/cuda-resume-b.log" "kept + uploaded = 56, uploaded > 0"
    grep -i "error\|differs" "$OUT/cuda-resume-b.log" | head -5
    same=1; for x in /tmp/cr-a/*; do n=$(basename $x); [ $n = qdist_report.json ] && continue; cmp -s $x /tmp/cr-b/$n || { echo "DIFF $n"; same=0; }; done
    echo "CUDA kill+resume byte-identical: $same"
    # every method and scheme that installs: integers dequantized on the device from the codes the
    # quantizer left there, float schemes dequantized on the host and uploaded; each checked bit for bit
    qb="$B/qdist quantize --backend cuda --model $f --overwrite --progress none"
    cal="--calib $f/calib.jsonl --nsamples 32 --seqlen 512"
    while IFS='|' read -r tag args expect; do
      rm -rf /tmp/ci-$tag /tmp/ci-$tag.qdist-staging
      QD_CHECK_INSTALL=1 $RUN $qb $args --output /tmp/ci-$tag </dev/null >"$OUT/cuda-install-$tag.log" 2>&1; rc=$?
      echo "install check $tag ($args): rc=$rc"; installs "$OUT/cuda-install-$tag.log" "$expect"
      grep -i "error\|differs" "$OUT/cuda-install-$tag.log" | head -3
      rm -rf /tmp/ci-$tag /tmp/ci-$tag.qdist-staging
    done <<EOF2
rtn|--method rtn $cal|56 kept
gptq-act|--method gptq --act-order $cal|56 kept
awq|--method awq $cal|56 kept
int8|--scheme w8a8-int8 --method gptq $cal|56 kept
fp8-gptq|--scheme fp8-dynamic --method gptq $cal|56 host
nvfp4|--scheme nvfp4a16 --method rtn|56 host
EOF2
    ;;
  esac
done
python3 bench/summarize.py "$OUT"/bench-*.log "$OUT"/torch-*.log 2>/dev/null | tee "$OUT/summary.md"
