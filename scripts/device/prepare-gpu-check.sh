#!/usr/bin/env bash
# Build .device-kit/, the files the GPU check carries to a lent GPU machine (docs/trainer.md, "GPU check"): wheels of the
# packages that machine's image lacks (for its Python 3.12, versions from constraints.txt), the default base model
# with its weights stored as fp16 (half the size; the trainer loads them as fp32), and NCBI-disease from ../shared.
# Runs here, after `make install`; the device tool carries at most 64 MiB, so the kit is checked against 56 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT=.device-kit
PY=.venv/bin/python
TARGET_PYTHON=${TARGET_PYTHON:-3.12}
[[ -x $PY ]] || { echo "run make install first" >&2; exit 1; }
[[ -f ../shared/data/ncbi_disease/train.jsonl ]] || { echo "no ../shared/data/ncbi_disease beside the repo" >&2; exit 1; }

pin() {  # the constraints.txt line of a package, whatever its spelling (pydantic-core / pydantic_core)
  local pattern=${1//[-_]/[-_]}
  grep -iE "^${pattern}==" constraints.txt || { echo "no pin for $1 in constraints.txt" >&2; exit 1; }
}

rm -rf "$KIT"
mkdir -p "$KIT/whl" "$KIT/data"
binary=(pydantic pydantic-core pydantic-settings python-dotenv annotated-types typing-inspection typing-extensions)
pins=()
for name in "${binary[@]}"; do pins+=("$(pin "$name")"); done
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$TARGET_PYTHON" --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$KIT/whl" "${pins[@]}"
"$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$KIT/whl" "$(pin seqeval)"  # pure Python, sdist only
"$PY" scripts/device/half_model.py "$KIT/base-model"
cp -r ../shared/data/ncbi_disease "$KIT/data/"

size=$(du -sm "$KIT" | cut -f1)
echo "$KIT: ${size} MiB ($(ls "$KIT/whl" | wc -l) wheels, base model, NCBI-disease)"
if (( size > 56 )); then
  echo "$KIT is over 56 MiB: with the working tree it would not fit the device tool's 64 MiB" >&2
  exit 1
fi
