#!/usr/bin/env bash
# The trainer's GPU check, one call on a lent GPU machine (docs/trainer.md, "GPU check"). Prepare the kit here first
# (bash scripts/device/prepare-gpu-check.sh), then through the device tool:
#   run(command="bash scripts/device/gpu-check.sh", carry=[".device-kit"], timeout_s=540)
# It runs the CUDA tests (services/trainer/tests/gpu: bf16 and fp16 autocast, fp32 weights, a run that learns and
# whose folder serves the same spans on a CPU) and benchmarks/train_gold.py on the GPU in bf16 and fp16. Logs go to
# $OUT (the device tool brings them back), else to ./gpu-check-out.
set -uo pipefail
cd "$(dirname "$0")/../.."
KIT=.device-kit
OUT=${OUT:-gpu-check-out}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
[[ -d $KIT/whl ]] || { echo "no $KIT: run scripts/device/prepare-gpu-check.sh here and carry it" >&2; exit 1; }

"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-check-site \
  "$KIT"/whl/*.whl || exit 1
export PYTHONPATH=/tmp/gpu-check-site:shared/src:services/trainer/src PYTHONUNBUFFERED=1
export SYNTHNER_GOLD_DATA=$KIT/data SYNTHNER_TEST_BASE_MODEL=$KIT/base-model
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >> "$OUT/nvidia-smi.txt"
"$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__,
  "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "-")' \
  | tee "$OUT/versions.txt"

status=0
# --noconftest: the repository's conftest.py wants the broker's client, which this check does not need
"$PYTHON" -m pytest --noconftest -p no:cacheprovider -o addopts=--import-mode=importlib -m cuda -rA -s \
  services/trainer/tests/gpu 2>&1 | tee "$OUT/pytest.log"
(( PIPESTATUS[0] == 0 )) || status=1
data=$KIT/data/ncbi_disease
for precision in auto fp16; do
  "$PYTHON" benchmarks/train_gold.py --device cuda --precision "$precision" --base-model "$KIT/base-model" \
    --train "$data/train.jsonl" --dev "$data/dev.jsonl" --test "$data/test.jsonl" ${TRAIN_GOLD_ARGS:-} \
    2>&1 | tee "$OUT/train_gold_$precision.log"
  (( PIPESTATUS[0] == 0 )) || status=1
done
tail -n 1 "$OUT"/train_gold_*.log
exit $status
