"""The GPU check's base-model copy (scripts/device/half_model.py): fp16 on disk, the same model for the trainer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from synthner_trainer.base_model import check_base_model, default_base_model
from synthner_trainer.settings import TrainingConfig
from synthner_trainer.training import TrainingPlan, load_for_training

SCRIPT = Path(__file__).resolve().parents[4] / "scripts" / "device" / "half_model.py"


def test_the_half_size_base_model_loads_for_training_as_the_fp16_rounded_original(tmp_path: Path) -> None:
    out = tmp_path / "base-model"
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, capture_output=True)
    source = default_base_model()
    original, halved = load_file(source / "model.safetensors"), load_file(out / "model.safetensors")
    assert halved.keys() == original.keys()
    assert {t.dtype for t in halved.values()} <= {torch.float16, torch.int64}
    assert (out / "model.safetensors").stat().st_size < 0.55 * (source / "model.safetensors").stat().st_size
    assert check_base_model(out) == out  # config, tokenizer and weights all there

    _, model = load_for_training(TrainingPlan([], [], ["Disease"], out, TrainingConfig()))
    embeddings = model.get_input_embeddings().weight
    assert embeddings.dtype == torch.float32
    expected = original["embeddings.word_embeddings.weight"].to(torch.float16).to(torch.float32)
    assert torch.equal(embeddings.detach(), expected)
