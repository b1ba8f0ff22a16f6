#!/usr/bin/env bash
# Installs what building and running sageattention needs, only where it is missing:
# the build tools, numpy, and torch (the local CPU build 2.13.0 when no torch is installed; a GPU
# machine brings its own CUDA build).
#   --tests  also pytest, GoogleTest (Debian libgtest-dev) and the integration-test packages of
#            scripts/integration-requirements.txt (transformers); from .offline_wheels/ when that
#            folder exists (the offline GPU machine: see scripts/fetch_offline_wheels.sh).
#   --wheel  also the wheel checkers of scripts/build_wheel.sh: auditwheel (manylinux tag), wheel
#            (retagging) and cuobjdump (the PyPI build, when no CUDA toolkit provides one).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tests=0 wheel=0
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1 ;;
    --wheel) wheel=1 ;;
    *) echo "install_deps.sh: unknown option $arg (use --tests and/or --wheel)" >&2; exit 2 ;;
  esac
done
has() { "$PYTHON" -c "import $1" 2>/dev/null; }

if (( tests )) && ! [ -f /usr/include/gtest/gtest.h ]; then
  echo "== installing GoogleTest (Debian package libgtest-dev)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgtest-dev >/dev/null
fi
if ! has torch; then
  echo "== installing torch 2.13.0 (CPU build)"
  "$PYTHON" -m pip install -q torch==2.13.0
fi
need=()
has numpy || need+=(numpy)
has scikit_build_core || need+=("scikit-build-core>=0.9")
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja)
if (( tests )); then has pytest || need+=(pytest); fi
if (( wheel )); then
  has auditwheel || need+=(auditwheel)
  has wheel || need+=(wheel)
  if ! command -v cuobjdump >/dev/null && ! [ -x /usr/local/cuda/bin/cuobjdump ] \
      && ! "$PYTHON" -m pip show -q nvidia-cuda-cuobjdump 2>/dev/null; then
    need+=("nvidia-cuda-cuobjdump>=13,<14")
  fi
fi
if (( ${#need[@]} )); then "$PYTHON" -m pip install -q "${need[@]}"; fi

if (( tests )) && ! has transformers; then
  if [ -d .offline_wheels ]; then
    echo "== installing the integration-test packages from .offline_wheels/"
    "$PYTHON" -m pip install -q --no-index --find-links .offline_wheels -r scripts/integration-requirements.txt
  else
    echo "== installing the integration-test packages (scripts/integration-requirements.txt)"
    "$PYTHON" -m pip install -q -r scripts/integration-requirements.txt
  fi
fi
