#!/usr/bin/env bash
# Times several builds of the library in one GPU call (METHOD.md: variants side by side, same run).
# Each variant is NAME=CUDA_FLAGS; the flags are added to CMAKE_CUDA_FLAGS (e.g. -DSOME_KNOB=1), an
# empty value is the baseline. Builds run in parallel (sm_90a only unless SAGEATTN_CUDA_ARCHS is set),
# then `python -m sageattention bench` runs once per variant with SAGEATTN_LIBRARY pointing at it.
#
#   scripts/bench_variants.sh base= knob="-DSAGEATTN_EXPERIMENT=1"
#   BENCH_ARGS="--head-dims 128 --causal 0 --seqlens 4096 16384" scripts/bench_variants.sh base= ...
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
ARCHS=${SAGEATTN_CUDA_ARCHS:-90a}
BENCH_ARGS=${BENCH_ARGS:---head-dims 128 --causal both --seqlens 4096 16384}
(( $# )) || { echo "usage: $0 NAME=CUDA_FLAGS [NAME=CUDA_FLAGS ...]"; exit 2; }

names=()
for spec in "$@"; do
  name=${spec%%=*}; flags=${spec#*=}
  names+=("$name")
  ( cmake -S . -B "/tmp/variants/$name" -G Ninja -DSAGEATTN_CUDA_ARCHS="$ARCHS" \
        -DCMAKE_CUDA_FLAGS="$flags" > "$OUT/build_$name.log" 2>&1 &&
    cmake --build "/tmp/variants/$name" >> "$OUT/build_$name.log" 2>&1 ) &
done
wait
for name in "${names[@]}"; do
  if [ ! -f "/tmp/variants/$name/libsageattn.so" ]; then
    echo "variant $name failed to build:"; tail -20 "$OUT/build_$name.log"; continue
  fi
  grep -h "spill" "$OUT/build_$name.log" | sort -u | sed "s/^/[$name] /" | head -8
done
for name in "${names[@]}"; do
  [ -f "/tmp/variants/$name/libsageattn.so" ] || continue
  echo "==== variant $name"
  SAGEATTN_LIBRARY="/tmp/variants/$name/libsageattn.so" PYTHONPATH="$PWD/python" \
    python3 -m sageattention bench --methods sage sdpa_flash $BENCH_ARGS --json "$OUT/bench_$name.json" \
    > "$OUT/bench_$name.log" 2>&1
  grep -E "^ +[0-9]+ +(yes|no)" "$OUT/bench_$name.log" || tail -3 "$OUT/bench_$name.log"
done
