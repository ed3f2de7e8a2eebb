"""Precision of the training loop: fp32 on the CPU unless bf16 is asked for, bf16 only where it is native, fp16 on
CUDA only, and fp32 weights whatever the base model stores."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertConfig, BertModel

from synthner_trainer.base_model import default_base_model
from synthner_trainer.settings import TrainingConfig
from synthner_trainer.training import (
    PrecisionError,
    TrainingPlan,
    autocast_for,
    cpu_has_native_bf16,
    load_for_training,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_the_cpu_trains_in_fp32_unless_asked(precision: str) -> None:
    assert autocast_for(CPU, precision) == (None, None)


def test_bf16_on_the_cpu_autocasts_matrix_products_where_native_and_is_refused_elsewhere() -> None:
    if not cpu_has_native_bf16():
        with pytest.raises(PrecisionError, match="no native bf16"):
            autocast_for(CPU, "bf16")
        return
    autocast, scaler = autocast_for(CPU, "bf16")
    assert autocast is not None
    assert scaler is None
    layer = torch.nn.Linear(4, 2)
    with autocast:
        out = layer(torch.ones(3, 4))
    assert out.dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32  # the weights stay fp32


def test_an_unknown_precision_is_refused_by_the_settings() -> None:
    with pytest.raises(pydantic.ValidationError):
        TrainingConfig(precision="fp8")  # type: ignore[arg-type]


def test_fp16_is_refused_on_the_cpu() -> None:
    with pytest.raises(PrecisionError, match="CUDA only"):
        autocast_for(CPU, "fp16")


def test_a_half_precision_base_model_trains_with_fp32_weights(tmp_path: Path) -> None:
    # transformers keeps a checkpoint's own dtype by default; fp16 master weights would break loss scaling on a GPU
    # and train in half precision everywhere
    tokenizer = AutoTokenizer.from_pretrained(default_base_model(), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    half = BertModel(config)
    for parameter in half.parameters():
        parameter.data = parameter.data.to(torch.float16)
    half.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert {t.dtype for t in load_file(tmp_path / "model.safetensors").values()} == {torch.float16}
    plan = TrainingPlan([], [], ["Disease"], tmp_path, TrainingConfig())
    _, model = load_for_training(plan)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
