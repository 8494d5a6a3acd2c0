#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check_identity.sh - are the fixture's checkpoints byte-identical between two versions of qdist?
#
# Quantizes fixtures/pycode-16m (8 x 128 calibration tokens, CPU backend) with RTN, GPTQ and AWQ into
# every export format (gptq, gptq_v2, awq, compressed-tensors, fake) with a base binary and a head
# binary, and compares every output file byte for byte. Prints one PASS/FAIL row per run and exits
# non-zero on any FAIL.
#
#   bench/identity/check_identity.sh [--base REF] [--head REF | --head-bin BIN] [--keep DIR]
#
#   --base REF      git ref built as the reference (default 9db6005, the tree issue 16 starts from)
#   --head REF      build this ref as the other side (default: the binary of this checkout, build/qdist)
#   --head-bin BIN  use this binary as the other side
#   --base-bin BIN  use this binary as the base instead of building --base
#   --keep DIR      keep the outputs under DIR (default: a temporary directory, removed at the end)
#
# A ref is built once in a temporary git worktree (ccache when found) into
# ${QD_IDENTITY_CACHE:-build/identity}/<commit>/qdist and reused while that file exists.
#
# Compared: every file the run writes into its output directory, except qdist_report.json, which
# holds wall times, per-rank timings and the qdist version: those differ between any two runs, and
# .qdist-output, the marker that says a directory is qdist's output (issue 14: --overwrite replaces only
# a directory carrying it); 9db6005 wrote none, and it holds no checkpoint bytes.
# A combination that the base refuses (the format cannot express the scheme) must be refused by the
# head with the same exit status and no output directory: it is listed as "refused" and passes.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
base_ref=9db6005 head_ref= head_bin= base_bin= keep=
while [ $# -gt 0 ]; do
    case "$1" in
        --base) base_ref=$2; shift 2 ;;
        --head) head_ref=$2; shift 2 ;;
        --head-bin) head_bin=$2; shift 2 ;;
        --base-bin) base_bin=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "check_identity: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

cache=${QD_IDENTITY_CACHE:-$repo/build/identity}
python=${QD_PYTHON:-}
[ -z "$python" ] && [ -x "$repo/build/venv/bin/python" ] && python=$repo/build/venv/bin/python

# build_ref REF -> prints the path of that ref's qdist, building it in a temporary worktree if needed
build_ref() {
    local sha bin src
    sha=$(git -C "$repo" rev-parse --verify "$1^{commit}") || { echo "check_identity: '$1' is not a commit" >&2; exit 2; }
    bin=$cache/$sha/qdist
    if [ ! -x "$bin" ]; then
        src=$(mktemp -d "${TMPDIR:-/tmp}/qd-identity-src.XXXXXX")
        git -C "$repo" worktree add --detach "$src" "$sha" >&2
        local launcher=()
        command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
        local py=()
        [ -n "$python" ] && py=(-DPython3_EXECUTABLE="$python")
        echo "check_identity: building $1 ($sha) in $src" >&2
        cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" "${py[@]}" >&2
        cmake --build "$src/build" --target qdist -j"${QD_IDENTITY_JOBS:-2}" >&2
        mkdir -p "$cache/$sha"
        cp "$src/build/qdist" "$bin.tmp" && mv "$bin.tmp" "$bin"
        git -C "$repo" worktree remove --force "$src" >&2
    fi
    echo "$bin"
}

[ -n "$base_bin" ] || base_bin=$(build_ref "$base_ref")  # keeps --base's ref in the cache path
if [ -z "$head_bin" ]; then
    if [ -n "$head_ref" ]; then head_bin=$(build_ref "$head_ref"); else head_bin=$repo/build/qdist; fi
fi
for b in "$base_bin" "$head_bin"; do
    [ -x "$b" ] || { echo "check_identity: no executable '$b' (build it first, or pass --head-bin)" >&2; exit 2; }
done

work=${keep:-$(mktemp -d "${TMPDIR:-/tmp}/qd-identity.XXXXXX")}
mkdir -p "$work"
[ -n "$keep" ] || trap 'rm -rf "$work"' EXIT
model=$repo/fixtures/pycode-16m
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
    OMPI_MCA_btl_vader_single_copy_mechanism=none

# quantize SIDE BIN NAME METHOD FORMAT [FLAGS...] -> exit status of the run; output in $work/SIDE/NAME
quantize() {
    local side=$1 bin=$2 name=$3 method=$4 format=$5
    shift 5
    local out=$work/$side/$name
    rm -rf "$out" "$out.qdist-staging"
    mkdir -p "$work/$side"
    set +e
    "$bin" quantize --model "$model" --output "$out" --calib "$model/calib.jsonl" --method "$method" \
        --format "$format" --nsamples 8 --seqlen 128 --backend cpu --progress none --quiet "$@" >"$out.log" 2>&1
    local rc=$?
    set -e
    return $rc
}

echo "base: $base_bin"
echo "head: $head_bin"
echo "excluded from the comparison: qdist_report.json (wall times, per-rank timings, qdist version)," \
    ".qdist-output (the output-directory marker, not written by 9db6005)"
# every method into every format with its defaults, then the flags that reach other code paths:
# an asymmetric RTN/GPTQ (the awq format needs zero points), GPTQ act-order and static groups
cases=()
for method in rtn gptq awq; do
    for format in gptq gptq_v2 awq compressed-tensors fake; do cases+=("$method $format"); done
done
cases+=("rtn awq --asym" "gptq awq --asym" "gptq compressed-tensors --asym" "gptq gptq --act-order"
    "gptq fake --act-order" "gptq gptq_v2 --act-order --static-groups")
printf '%-6s %-19s %-30s %-6s %5s  %s\n' method format flags result files detail
fails=0
for c in "${cases[@]}"; do
        read -r method format flags <<<"$c"
        name=$(echo "$c" | tr -s ' -' '-')
        rb=0 rh=0
        # shellcheck disable=SC2086 # flags are words
        quantize base "$base_bin" "$name" "$method" "$format" $flags || rb=$?
        # shellcheck disable=SC2086
        quantize head "$head_bin" "$name" "$method" "$format" $flags || rh=$?
        a=$work/base/$name b=$work/head/$name
        result=PASS n=0 detail=
        if [ "$rb" -ne 0 ] || [ "$rh" -ne 0 ]; then
            if [ "$rb" -eq "$rh" ] && [ ! -e "$b" ]; then
                result=PASS detail="refused by both (exit $rb): $(tail -n1 "$a.log")"
            else
                result=FAIL detail="exit base $rb, head $rh: $(tail -n1 "$b.log")"
            fi
        else
            la=$(cd "$a" && find . -type f ! -name qdist_report.json ! -name .qdist-output | LC_ALL=C sort)
            lb=$(cd "$b" && find . -type f ! -name qdist_report.json ! -name .qdist-output | LC_ALL=C sort)
            if [ "$la" != "$lb" ]; then
                result=FAIL detail="file lists differ: $(diff <(echo "$la") <(echo "$lb") | grep '^[<>]' | tr '\n' ' ' || true)"
            else
                for f in $la; do
                    n=$((n + 1))
                    if ! cmp -s "$a/$f" "$b/$f"; then
                        result=FAIL detail="$detail ${f#./}"
                    fi
                done
                [ "$result" = FAIL ] && detail="differ:$detail"
                [ -e "$a/qdist_report.json" ] || detail="$detail (base wrote no qdist_report.json)"
            fi
        fi
        [ "$result" = FAIL ] && fails=$((fails + 1))
        printf '%-6s %-19s %-30s %-6s %5s  %s\n' "$method" "$format" "${flags:--}" "$result" "$n" "$detail"
done
if [ "$fails" -eq 0 ]; then echo "PASS: every checkpoint byte-identical"; else echo "FAIL: $fails run(s) differ"; fi
[ -n "$keep" ] && echo "outputs kept in $work"
[ "$fails" -eq 0 ]
