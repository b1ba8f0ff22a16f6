#!/usr/bin/env bash
# Installs what building and running sageattention needs, only where it is missing:
# the build tools, numpy, and torch (the local CPU build 2.13.0 when no torch is installed; a GPU
# machine brings its own CUDA build). With --tests also pytest and GoogleTest (Debian libgtest-dev).
set -euo pipefail
PYTHON=${PYTHON:-python3}
if [[ "${1:-}" == "--tests" ]] && ! [ -f /usr/include/gtest/gtest.h ]; then
  echo "== installing GoogleTest (Debian package libgtest-dev)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgtest-dev >/dev/null
fi
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "== installing torch 2.13.0 (CPU build)"
  "$PYTHON" -m pip install -q torch==2.13.0
fi
need=()
"$PYTHON" -c "import numpy" 2>/dev/null || need+=(numpy)
"$PYTHON" -c "import scikit_build_core" 2>/dev/null || need+=("scikit-build-core>=0.9")
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja)
if [[ "${1:-}" == "--tests" ]]; then "$PYTHON" -c "import pytest" 2>/dev/null || need+=(pytest); fi
if (( ${#need[@]} )); then "$PYTHON" -m pip install -q "${need[@]}"; fi
