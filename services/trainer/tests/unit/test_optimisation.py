"""Layer-wise learning rates, the learning-rate schedule (over steps or a time budget) and the weight average of the
training loop, on a tiny random BERT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

from synthner_shared.contracts import HyperParameters, TrainingRequested
from synthner_trainer.pipeline import request_model_and_config, tightest
from synthner_trainer.settings import TrainerSettings
from synthner_trainer.training import LinearSchedule, Optimizer, WeightAverage, parameter_groups, run_progress


def tiny_bert(layers: int = 3) -> BertForTokenClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
    )
    config.num_labels = 3
    return BertForTokenClassification(config)


def rates_by_parameter(model: BertForTokenClassification, decay: float) -> dict[str, float]:
    groups = parameter_groups(model, 1e-3, 0.01, decay)
    by_id = {id(p): group["lr"] for group in groups for p in group["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters()}


def test_without_layer_decay_every_parameter_learns_at_the_base_rate() -> None:
    model = tiny_bert()
    groups = parameter_groups(model, 1e-3, 0.01)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {g["lr"] for g in groups} == {1e-3}


def test_layer_decay_lowers_the_rate_one_step_per_layer_down_to_the_embeddings() -> None:
    model = tiny_bert(layers=3)
    rates = rates_by_parameter(model, 0.5)
    assert rates["classifier.weight"] == pytest.approx(1e-3)
    assert rates["bert.encoder.layer.2.output.dense.weight"] == pytest.approx(5e-4)
    assert rates["bert.encoder.layer.0.attention.self.query.weight"] == pytest.approx(1.25e-4)
    assert rates["bert.embeddings.word_embeddings.weight"] == pytest.approx(6.25e-5)
    assert len(rates) == len(list(model.parameters()))


def test_biases_and_norms_get_no_weight_decay() -> None:
    model = tiny_bert()
    groups = parameter_groups(model, 1e-3, 0.01, 0.9)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        for parameter in group["params"]:
            exempt = names[id(parameter)].endswith(("bias", "LayerNorm.weight"))
            assert group["weight_decay"] == (0.0 if exempt else 0.01)


def test_frozen_parameters_are_left_out() -> None:
    model = tiny_bert()
    model.bert.embeddings.requires_grad_(False)
    groups = parameter_groups(model, 1e-3, 0.01, 0.9)
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())


def test_weight_average_follows_the_weights_and_swaps_back() -> None:
    model = tiny_bert()
    start = model.classifier.weight.detach().clone()
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    average.update(model)  # average = start + 0.5
    average.swap(model)
    torch.testing.assert_close(model.classifier.weight, start + 0.5)
    average.swap(model)
    torch.testing.assert_close(model.classifier.weight, start + 1.0)


def test_the_schedule_warms_up_then_decays_linearly_to_zero() -> None:
    schedule = LinearSchedule(0.1)
    assert schedule.factor(0.0) == 0.0
    assert schedule.factor(0.05) == pytest.approx(0.5)
    assert schedule.factor(0.1) == pytest.approx(1.0)
    assert schedule.factor(0.55) == pytest.approx(0.5)
    assert schedule.factor(1.0) == 0.0
    assert LinearSchedule(0.0).factor(0.0) == 1.0
    # All warm-up (the contract allows a ratio of 1): up to the peak, then 0 at the end, no division by zero.
    assert LinearSchedule(1.0).factor(0.5) == pytest.approx(0.5)
    assert LinearSchedule(1.0).factor(1.0) == 0.0


def test_a_time_budget_that_runs_out_first_sets_the_progress() -> None:
    # 10 of 100 steps done, half the budget used: the run is half way, so the rate has decayed half way.
    assert run_progress(10, 100, 50.0, 100.0) == pytest.approx(0.5)
    # Without a budget, or ahead of it, the steps set it.
    assert run_progress(10, 100, 50.0, None) == pytest.approx(0.1)
    assert run_progress(80, 100, 50.0, 100.0) == pytest.approx(0.8)
    # Past the budget (the last step overruns it): the end, never beyond.
    assert run_progress(10, 100, 150.0, 100.0) == 1.0


def test_each_step_learns_at_the_rate_its_progress_gives() -> None:
    model = tiny_bert()
    optimizer = Optimizer(
        model, learning_rate=1e-3, weight_decay=0.0, warmup_ratio=0.1, total_steps=100, device=torch.device("cpu")
    )
    batch = {
        "input_ids": torch.tensor([[1, 2, 3, 4]]),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
        "labels": torch.tensor([[0, 1, 2, 0]]),
    }
    optimizer.step(batch, progress=0.55)
    assert [group["lr"] for group in optimizer.optimizer.param_groups] == pytest.approx([5e-4, 5e-4])
    optimizer.step(batch)  # no progress given: 1 of 100 planned steps done, still warming up
    assert [group["lr"] for group in optimizer.optimizer.param_groups] == pytest.approx([1e-4, 1e-4])


def test_the_tightest_time_bound_holds() -> None:
    assert tightest(None, None) is None
    assert tightest(210.0, None) == 210.0
    assert tightest(None, 90.0) == 90.0
    assert tightest(210.0, 90.0) == 90.0
    request = TrainingRequested(
        correlation_id="c-1", producer="tests", hyperparameters=HyperParameters(max_seconds=90.0)
    )
    settings = TrainerSettings(data_dir=Path("unused"), max_train_seconds=210.0)
    _, config = request_model_and_config(request, settings)
    assert config.max_seconds == 90.0
