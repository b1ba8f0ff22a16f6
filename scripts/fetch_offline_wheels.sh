#!/usr/bin/env bash
# Downloads, on a machine with network access, every wheel that installing the integration-test
# packages (scripts/integration-requirements.txt, i.e. transformers) needs on the offline GPU machine:
# CPython 3.12, Linux x86_64, glibc >= 2.28 (its torch wheels are manylinux_2_28). They land in
# .offline_wheels/ (git-ignored), which the device tool carries when named in its `carry` list;
# there, `bash scripts/install_deps.sh --tests` installs from it with --no-index.
#
# torch and numpy are left out: the GPU machine has its own CUDA torch and numpy, and numpy alone
# would take a quarter of the 64 MiB that the device tool carries.
#
#   bash scripts/fetch_offline_wheels.sh          # then: carry [".offline_wheels"]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEST=${DEST:-.offline_wheels}
TARGET_PYTHON=${TARGET_PYTHON:-3.12}
MAX_MIB=${MAX_MIB:-48}   # the device tool carries 64 MiB of ignored paths in all; leave room
EXCLUDE_RE='^(numpy|torch)$'

py_tag="cp${TARGET_PYTHON/./}"
target=(--only-binary=:all: --implementation cp --python-version "$TARGET_PYTHON" --abi "$py_tag")
# pip does not widen a manylinux_2_28 platform to the older glibc tags that most wheels carry
# (manylinux_2_17 / manylinux2014), so every tag a glibc-2.28 machine accepts is listed.
for minor in $(seq 28 -1 17); do target+=(--platform "manylinux_2_${minor}_x86_64"); done
target+=(--platform manylinux2014_x86_64)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== resolving scripts/integration-requirements.txt for CPython $TARGET_PYTHON linux x86_64"
# A dry-run install for the target interpreter resolves the whole dependency closure without
# downloading it; the report names each pinned distribution.
"$PYTHON" -m pip install -q --dry-run --ignore-installed --report "$work/report.json" \
  --target "$work/unused" "${target[@]}" -r scripts/integration-requirements.txt
mapfile -t pins < <("$PYTHON" - "$work/report.json" "$EXCLUDE_RE" <<'PY'
import json, re, sys
report, exclude = json.load(open(sys.argv[1])), re.compile(sys.argv[2])
for item in report["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if not exclude.match(re.sub(r"[-_.]+", "-", name).lower()):
        print(f"{name}=={version}")
PY
)
echo "   ${#pins[@]} distributions (without torch, numpy)"

rm -rf "$DEST"
mkdir -p "$DEST"
"$PYTHON" -m pip download -q --no-deps -d "$DEST" "${target[@]}" "${pins[@]}"

count=$(find "$DEST" -name '*.whl' | wc -l)
bytes=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "== $DEST: $count wheels, $mib MiB"
if (( count != ${#pins[@]} )); then
  echo "error: expected ${#pins[@]} wheels, got $count" >&2; exit 1
fi
if (( mib > MAX_MIB )); then
  echo "error: $mib MiB is over the $MAX_MIB MiB budget (the device tool carries 64 MiB in all)" >&2; exit 1
fi
