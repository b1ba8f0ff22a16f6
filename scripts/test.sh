#!/usr/bin/env bash
# Runs every test that this machine can run, from a fresh checkout:
#   1. installs what the tests need, only if missing (GoogleTest, torch CPU build, pytest, numpy);
#   2. builds the library and the C++ tests with CMake for every target architecture (this is also
#      the check that every CUDA source compiles for sm80, sm86, sm89 and sm90a);
#   3. runs the C++ tests (CTest) and the Python tests (pytest) against that build;
#   4. checks that `pip install .` builds and installs the package.
# GPU tests run too when a CUDA GPU is present, and skip cleanly otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-test}
JOBS=${JOBS:-$(nproc)}
PYTHON=${PYTHON:-python3}

bash scripts/install_deps.sh --tests

echo "== building library + C++ tests ($BUILD_DIR)"
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DSAGEATTN_BUILD_TESTS=ON >/dev/null
build_log=$(mktemp)
cmake --build "$BUILD_DIR" -j "$JOBS" 2>&1 | tee "$build_log"
echo "   build took $(( $(date +%s) - start )) s"
# ptxas reports wgmma it had to serialize (C7520: wgmma in code it considers divergent; C7512: not
# enough registers) as an info line, not a warning; each cost the sm90 kernel 5-10 % when it slipped
# in (docs/design/sm90_kernel.md). Compiled objects print nothing again, so this sees a fresh build.
if grep -E "C75(20|12)|wgmma.mma_async instructions are serialized" "$build_log"; then
  echo "FAIL: ptxas serialized wgmma instructions (lines above)"; exit 1
fi
rm -f "$build_log"

echo "== C++ tests"
ctest --test-dir "$BUILD_DIR" -j "$JOBS" --output-on-failure

echo "== Python tests"
SAGEATTN_LIBRARY="$PWD/$BUILD_DIR/libsageattn.so" PYTHONPATH="$PWD/python" \
  "$PYTHON" -m pytest tests/python -q -p no:cacheprovider

echo "== pip install (offline-capable build, no build isolation)"
"$PYTHON" -m pip install -q --no-build-isolation --no-deps . 
(cd /tmp && "$PYTHON" -c "import sageattention, sageattention._library as l; l.load(); print('installed', sageattention.__version__, 'from', l.library_path())")
