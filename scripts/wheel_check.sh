#!/usr/bin/env bash
# Tests the wheel the way a user gets it: installed into a fresh virtual environment that sees the
# system's torch, numpy and pytest (--system-site-packages: the GPU machine is offline and its CUDA
# torch comes from the system), then the test suite run from outside the repository so that
# `import sageattention` resolves to the venv's copy with its bundled library.
#
#   bash scripts/wheel_check.sh                    # the wheel in dist/, built first if there is none
#   WHEEL=path/to.whl PYTEST_ARGS='-m "not gpu"' bash scripts/wheel_check.sh
#
# scripts/gpu_check.sh runs it as STEPS=wheel, on the GPU tests (-m gpu) by default.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
VENV=${VENV:-/tmp/sageattn-wheel-venv}
PYTEST_ARGS=${PYTEST_ARGS:--m gpu}

if [[ -z "${WHEEL:-}" ]]; then
  shopt -s nullglob
  wheels=(dist/sageattention-*.whl)
  if (( ${#wheels[@]} == 0 )); then
    bash scripts/build_wheel.sh
    wheels=(dist/sageattention-*.whl)
  fi
  if (( ${#wheels[@]} != 1 )); then
    echo "error: expected one wheel in dist/, found: ${wheels[*]}" >&2; exit 1
  fi
  WHEEL=${wheels[0]}
fi
WHEEL=$(realpath "$WHEEL")
echo "== wheel $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"
# Again here: a wheel carried from another machine was checked there, not on this one's toolchain.
"$PYTHON" scripts/check_wheel.py "$WHEEL"

rm -rf "$VENV"
# --without-pip: the system's pip, seen through --system-site-packages, installs into the venv, and
# Debian-style Pythons without ensurepip (python3-venv) can still make the venv.
"$PYTHON" -m venv --system-site-packages --without-pip "$VENV"
# A venv made by a Python that is itself a venv (the GPU machine's torch lives in one) sees the base
# interpreter's site-packages, not that venv's: chain the creator's package folders with a .pth
# file. They come after the new venv's own site-packages, so the wheel's copy still wins.
venv_site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PYTHON" - > "$venv_site/_creator_site_packages.pth" <<'PY'
import site, sysconfig
paths = site.getsitepackages() + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
print("\n".join(dict.fromkeys(paths)))
PY
# --no-index: works offline, and proves the wheel needs nothing beyond what the system has.
# --ignore-installed: a sageattention in the system site-packages (gpu_check's install step) would
# otherwise count as "already satisfied" and nothing would be installed into the venv.
"$VENV/bin/python" -m pip install -q --no-index --no-deps --ignore-installed "$WHEEL"

cd /tmp
# The environment must not point the package or the library elsewhere.
unset SAGEATTN_LIBRARY PYTHONPATH
"$VENV/bin/python" - "$VENV" <<'PY'
import os, sys
import sageattention
from sageattention import _library
venv = os.path.realpath(sys.argv[1])
package = os.path.realpath(sageattention.__file__)
if not package.startswith(venv + os.sep):
    sys.exit(f"error: sageattention imported from {package}, not from the venv {venv}")
lib = _library.load()
print(f"== sageattention {sageattention.__version__} from {os.path.dirname(package)}")
print(f"   library {lib.path}, SASS for sm {' '.join(lib.compiled_archs)}")
PY

if "$VENV/bin/python" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "== PTX path (CUDA_FORCE_PTX_JIT=1): what GPUs newer than the SASS targets run"
  "$VENV/bin/python" "$REPO/scripts/ptx_jit_check.py"
else
  echo "== PTX path: skipped (no CUDA GPU)"
fi

echo "== pytest $PYTEST_ARGS (against the installed wheel)"
eval "set -- $PYTEST_ARGS"
exec "$VENV/bin/python" -m pytest "$REPO/tests/python" -q -rfEs -p no:cacheprovider "$@"
