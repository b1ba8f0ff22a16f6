#!/usr/bin/env bash
# Copies the GoogleTest sources of this machine (Debian libgtest-dev: /usr/src/googletest) into
# .gtest-src/ (git-ignored) so that a GPU machine without GoogleTest can build the C++ tests:
# carry .gtest-src and run `STEPS=ctest scripts/gpu_check.sh` (it picks the folder up).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${GTEST_SOURCE:-/usr/src/googletest}
[ -f "$src/CMakeLists.txt" ] || { echo "no GoogleTest sources at $src (apt-get install libgtest-dev)"; exit 1; }
rm -rf .gtest-src
cp -r "$src" .gtest-src
echo "copied $src to .gtest-src ($(du -sh .gtest-src | cut -f1))"
