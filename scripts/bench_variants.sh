#!/usr/bin/env bash
# Times several builds of the library in one GPU call (METHOD.md: variants side by side, same run).
# Each variant is NAME=CUDA_FLAGS, built from this tree with the flags added to CMAKE_CUDA_FLAGS
# (e.g. -DSOME_KNOB=1; an empty value is the tree as it is), or NAME:DIR=CUDA_FLAGS, built from the
# sources in DIR: a snapshot of another commit, made on the development machine and carried to
# the GPU machine (its copy of .git may lag behind), e.g. for the commit before the change:
#   mkdir -p .prof/base && git archive HEAD~1 CMakeLists.txt src include cmake | tar -x -C .prof/base
# (a git-ignored folder travels to the GPU machine only when named in the device tool's `carry`).
# Every library is built the same way (CMake, in parallel; sm_90a only unless SAGEATTN_CUDA_ARCHS
# is set): a pip-installed build against a CMake one measured 2-5 % apart on unchanged kernels
# (docs/performance.md, "A/B method note"). Then `python -m sageattention bench` runs once per
# variant and round with SAGEATTN_LIBRARY pointing at it; ROUNDS=2 alternates the variants twice.
#
#   scripts/bench_variants.sh base= knob="-DSAGEATTN_EXPERIMENT=1"
#   METHODS=sage_sm90 ROUNDS=2 scripts/bench_variants.sh before:.prof/base= after=
#   BENCH_ARGS="--head-dims 128 --causal 0 --seqlens 4096 16384" scripts/bench_variants.sh base= ...
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
# Per-variant logs go to LOGS and come back as one archive in $OUT: the device tool returns at most
# 8 files from $OUT, fewer than the build and bench logs of two variants over two rounds.
LOGS=$(mktemp -d /tmp/bench_variants.XXXXXX)
trap 'tar -czf "$OUT/bench_variants_logs.tar.gz" -C "$LOGS" . 2>/dev/null' EXIT
ARCHS=${SAGEATTN_CUDA_ARCHS:-90a}
BENCH_ARGS=${BENCH_ARGS:---head-dims 128 --causal both --seqlens 4096 16384}
METHODS=${METHODS:-sage sdpa_flash}
ROUNDS=${ROUNDS:-1}
(( $# )) || { echo "usage: $0 NAME[:SOURCE_DIR]=CUDA_FLAGS [...]"; exit 2; }

names=()
for spec in "$@"; do
  head=${spec%%=*}; flags=${spec#*=}
  name=${head%%:*}; src=.
  [[ $head == *:* ]] && src=${head#*:}
  [ -f "$src/CMakeLists.txt" ] || { echo "variant $name: no CMakeLists.txt in $src"; exit 2; }
  names+=("$name")
  ( cmake -S "$src" -B "/tmp/variants/$name" -G Ninja -DSAGEATTN_CUDA_ARCHS="$ARCHS" \
        -DCMAKE_CUDA_FLAGS="$flags" > "$LOGS/build_$name.log" 2>&1 &&
    cmake --build "/tmp/variants/$name" >> "$LOGS/build_$name.log" 2>&1 ) &
done
wait
for name in "${names[@]}"; do
  if [ ! -f "/tmp/variants/$name/libsageattn.so" ]; then
    echo "variant $name failed to build:"; tail -20 "$LOGS/build_$name.log"; continue
  fi
  grep -h "spill\|C75" "$LOGS/build_$name.log" | sort -u | sed "s/^/[$name] /" | head -8
done
for round in $(seq 1 "$ROUNDS"); do
  for name in "${names[@]}"; do
    [ -f "/tmp/variants/$name/libsageattn.so" ] || continue
    echo "==== variant $name (round $round)"
    # The Python layer of this tree drives every library (the C ABI is versioned and checked).
    SAGEATTN_LIBRARY="/tmp/variants/$name/libsageattn.so" PYTHONPATH="$PWD/python" \
      python3 -m sageattention bench --methods $METHODS $BENCH_ARGS --json "$LOGS/bench_${name}_$round.json" \
      > "$LOGS/bench_${name}_$round.log" 2>&1
    grep -E "^ +[0-9]+ +(yes|no)" "$LOGS/bench_${name}_$round.log" || tail -3 "$LOGS/bench_${name}_$round.log"
  done
done
