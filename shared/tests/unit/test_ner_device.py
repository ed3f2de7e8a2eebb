"""Device choice for training and prediction: ``auto`` falls back to the CPU, an explicit ``cuda`` never does.

(``auto`` taking the GPU where there is one: ``services/trainer/tests/gpu``.)
"""

from __future__ import annotations

import pytest
import torch

from synthner_shared.ner.predictor import DeviceUnavailableError, pick_device


def test_asking_for_cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back_to_the_cpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceUnavailableError, match="no CUDA device is available"):
        pick_device("cuda")
    with pytest.raises(DeviceUnavailableError):
        pick_device("cuda:0")
