"""Precision of the training loop: fp32 on the CPU unless bf16 is asked for, and bf16 only where it is native."""

from __future__ import annotations

import pydantic
import pytest
import torch

from synthner_trainer.settings import TrainingConfig
from synthner_trainer.training import PrecisionError, autocast_for, cpu_has_native_bf16

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
