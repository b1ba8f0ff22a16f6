#!/usr/bin/env bash
# Builds the one binary wheel of sageattention into dist/, checks it, and prints its name and size.
#
# One wheel serves every Python >= 3.9 and every torch >= 2.3 on Linux x86_64: the library is
# loaded through ctypes (no Python or torch ABI inside, tag py3-none), holds SASS for
# SAGEATTN_CUDA_ARCHS (default 80 86 89 90a) and PTX for newer GPUs (docs/wheels.md).
#
# The platform tag: `pip wheel` tags it linux_x86_64, which pip installs anywhere but PyPI refuses.
# When auditwheel is installed (`bash scripts/install_deps.sh --wheel`), it reads the glibc and
# libstdc++ symbol versions the binary really needs and the wheel is retagged with the manylinux
# tag it proves (manylinux_2_34 when built on this project's Debian 12 machines); a tag written by
# hand in pyproject.toml would claim compatibility whatever the build machine was.
#
#   bash scripts/build_wheel.sh
#   SAGEATTN_CUDA_ARCHS="80;90a" BUILD_DIR=build-wheel bash scripts/build_wheel.sh   # reuse a build
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DIST=${DIST:-dist}

config=()
[[ -n "${SAGEATTN_CUDA_ARCHS:-}" ]] && config+=("-Ccmake.define.SAGEATTN_CUDA_ARCHS=${SAGEATTN_CUDA_ARCHS}")
# A persistent build folder makes rebuilds incremental; by default pip builds in a fresh one.
[[ -n "${BUILD_DIR:-}" ]] && config+=("-Cbuild-dir=${BUILD_DIR}")

mkdir -p "$DIST"
rm -f "$DIST"/sageattention-*.whl   # exactly one wheel afterwards, never a stale one beside it
echo "== building the wheel (SAGEATTN_CUDA_ARCHS=${SAGEATTN_CUDA_ARCHS:-default})"
start=$(date +%s)
"$PYTHON" -m pip wheel --no-build-isolation --no-deps -q -w "$DIST" "${config[@]}" .
echo "   took $(( $(date +%s) - start )) s"
wheel=$(ls "$DIST"/sageattention-*.whl)

if "$PYTHON" -c "import auditwheel, wheel" 2>/dev/null; then
  plat=$("$PYTHON" -m auditwheel show --json "$wheel" 2>/dev/null \
         | "$PYTHON" -c "import json, sys; print(json.load(sys.stdin)['overall_tag'])")
  if [[ "$plat" == manylinux_* ]]; then
    "$PYTHON" -m wheel tags --remove --platform-tag "$plat" "$wheel" >/dev/null
    wheel=$(ls "$DIST"/sageattention-*.whl)
  else
    echo "warning: auditwheel finds no manylinux tag for this binary ($plat): keeping linux_x86_64"
  fi
else
  echo "note: auditwheel/wheel not installed (bash scripts/install_deps.sh --wheel): keeping the" \
       "linux_x86_64 tag (pip installs it; PyPI does not accept it)"
fi

echo "== checking $wheel"
"$PYTHON" scripts/check_wheel.py "$wheel"
echo "$(basename "$wheel") $(du -h "$wheel" | cut -f1)"
