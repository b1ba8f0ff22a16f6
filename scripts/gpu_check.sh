#!/usr/bin/env bash
# The whole GPU check in one command (design §7): install the package (builds the library), run the
# GPU test suite, run the benchmark, and print a short summary last. Full logs go to $OUT (the device
# tool's folder) or ./gpu_out.
#
#   scripts/gpu_check.sh                 # install + tests + bench (default sweep)
#   STEPS="install smoke" scripts/gpu_check.sh
#   STEPS=wheel scripts/gpu_check.sh     # the wheel in dist/ in a fresh venv + GPU tests (docs/wheels.md)
#   STEPS=ctest scripts/gpu_check.sh     # C++ unit tests incl. the sm90 PTX tests (needs libgtest-dev)
#   STEPS="install sanitize" scripts/gpu_check.sh  # compute-sanitizer memcheck + racecheck, small calls
#   SAGEATTN_CUDA_ARCHS=90a BENCH_ARGS="--seqlens 4096 16384" scripts/gpu_check.sh
#   SAGEATTN_CUDA_FLAGS="-DSAGEATTN_SM80_CLAMPED_EXP=1" STEPS="install tests" scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
STEPS=${STEPS:-install tests bench}
BENCH_ARGS=${BENCH_ARGS:-}
PYTEST_ARGS=${PYTEST_ARGS:-}
export PYTHONUNBUFFERED=1
summary=()

step() { [[ " $STEPS " == *" $1 "* ]]; }

{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit,driver_version --format=csv;
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())";
  # The device machine's copy of .git may be older than the files copied with it: the commit is
  # only a hint; the fingerprint of the sources identifies the code (the same command here gives it).
  echo "commit $(git rev-parse HEAD 2>/dev/null), sources $(find src include CMakeLists.txt -type f | LC_ALL=C sort | xargs sha1sum | sha1sum | cut -c1-12)"
  } > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

if step install; then
  start=$(date +%s)
  extra=()
  [[ -n "${SAGEATTN_CUDA_ARCHS:-}" ]] && extra+=("-Ccmake.define.SAGEATTN_CUDA_ARCHS=${SAGEATTN_CUDA_ARCHS}")
  # Experiment switches (e.g. -DSAGEATTN_SM80_CLAMPED_EXP=1) for a suite run on a variant.
  [[ -n "${SAGEATTN_CUDA_FLAGS:-}" ]] && extra+=("-Ccmake.define.CMAKE_CUDA_FLAGS=${SAGEATTN_CUDA_FLAGS}")
  if python3 -m pip install --no-build-isolation --no-deps -v "${extra[@]}" . > "$OUT/install.log" 2>&1; then
    summary+=("install: ok ($(( $(date +%s) - start )) s)")
  else
    summary+=("install: FAILED (see install.log)"); tail -40 "$OUT/install.log"
    printf '%s\n' "${summary[@]}"; exit 1
  fi
fi

if step wheel; then
  # The release artifact: the one wheel in dist/ (carried from the development machine, or built
  # here when there is none) installed into a fresh venv, and the GPU tests run against it.
  PYTEST_ARGS="-m gpu $PYTEST_ARGS" bash scripts/wheel_check.sh > "$OUT/wheel.log" 2>&1
  rc=$?
  summary+=("wheel: exit $rc, $(grep -m1 '^== wheel' "$OUT/wheel.log"), $(tail -1 "$OUT/wheel.log")")
  [[ $rc -ne 0 ]] && grep -E "^(FAILED|ERROR|FAIL|error)" "$OUT/wheel.log" | head -30
fi

if step ctest; then
  # The C++ unit tests, including the sm90a building blocks (tests/cpp/gpu/), which skip on the
  # CPU-only CI and run only here. GoogleTest: the system's, or .gtest-src carried from the
  # development machine (scripts/vendor_gtest.sh; carry=[".gtest-src"]).
  start=$(date +%s)
  gtest=()
  [ -f .gtest-src/CMakeLists.txt ] && gtest=(-DSAGEATTN_GTEST_SOURCE_DIR="$PWD/.gtest-src")  # scripts/vendor_gtest.sh
  if cmake -S . -B build-gpu-tests -G Ninja -DSAGEATTN_BUILD_TESTS=ON "${gtest[@]}" \
        -DSAGEATTN_CUDA_ARCHS="${SAGEATTN_CUDA_ARCHS:-90a}" > "$OUT/ctest.log" 2>&1 &&
     cmake --build build-gpu-tests -j >> "$OUT/ctest.log" 2>&1; then
    ctest --test-dir build-gpu-tests -j4 --output-on-failure >> "$OUT/ctest.log" 2>&1
    rc=$?
    summary+=("ctest: exit $rc, $(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1) ($(( $(date +%s) - start )) s)")
    [[ $rc -ne 0 ]] && grep -E "Failed|FAILED" "$OUT/ctest.log" | head -20
  else
    summary+=("ctest: build FAILED (see ctest.log)"); tail -20 "$OUT/ctest.log"
  fi
fi

# Run from outside the repository so `import sageattention` resolves to the installed package.
cd /tmp
REPO=$(cd - >/dev/null && pwd)

if step smoke; then
  python3 "$REPO/scripts/smoke.py" 2>&1 | tee "$OUT/smoke.log"
  summary+=("smoke: exit ${PIPESTATUS[0]}")
fi

if step sanitize; then
  # compute-sanitizer on small calls of every kernel path (scripts/sanitize_calls.py).
  for tool in memcheck racecheck; do
    start=$(date +%s)
    compute-sanitizer --tool "$tool" --error-exitcode 1 python3 "$REPO/scripts/sanitize_calls.py" \
      > "$OUT/sanitize_$tool.log" 2>&1
    rc=$?
    summary+=("sanitize $tool: exit $rc, $(grep -m1 'ERROR SUMMARY' "$OUT/sanitize_$tool.log" || tail -1 "$OUT/sanitize_$tool.log") ($(( $(date +%s) - start )) s)")
    [[ $rc -ne 0 ]] && grep -E "^=========" "$OUT/sanitize_$tool.log" | head -30
  done
fi

if step tests; then
  python3 -m pytest "$REPO/tests/python" -m gpu -q -rfEs -p no:cacheprovider $PYTEST_ARGS > "$OUT/pytest_gpu.log" 2>&1
  rc=$?
  summary+=("gpu tests: exit $rc, $(tail -1 "$OUT/pytest_gpu.log")")
  [[ $rc -ne 0 ]] && grep -E "^(FAILED|ERROR)" "$OUT/pytest_gpu.log" | head -30
fi

if step bench; then
  python3 -m sageattention bench --json "$OUT/bench.json" $BENCH_ARGS > "$OUT/bench.log" 2>&1
  summary+=("bench: exit $?")
  cat "$OUT/bench.log"
fi

echo "==== summary"
printf '%s\n' "${summary[@]}"
