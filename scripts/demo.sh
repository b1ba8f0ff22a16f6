#!/usr/bin/env bash
# Sets up a fresh machine and runs the demo: installs what is missing, builds and installs the
# package (`pip install .`, no build isolation so it works offline), runs `python -m sageattention demo`.
# On a machine without a CUDA GPU the demo says so and shows the CPU reference instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install_deps.sh
"$PYTHON" -m pip install -q --no-build-isolation --no-deps .
cd /tmp && exec "$PYTHON" -m sageattention demo "$@"
