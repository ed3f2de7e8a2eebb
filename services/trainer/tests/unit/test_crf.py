"""The word-level CRF: its loss against exhaustive enumeration, its place in the optimiser, and its configuration."""

from __future__ import annotations

import itertools

import pytest
import torch
from pydantic import ValidationError

from synthner_shared.ner import IGNORE_INDEX, iob2_tags
from synthner_trainer.crf import FORBIDDEN, ChainCRF
from synthner_trainer.settings import TrainingConfig
from synthner_trainer.training import Optimizer

TAGS = iob2_tags(["A", "B"])  # O, B-A, I-A, B-B, I-B
M = IGNORE_INDEX  # a position that is not a word's first sub-token


def exhaustive_nll(crf: ChainCRF, emissions: torch.Tensor, gold: list[int]) -> float:
    """-log p(gold) by summing over every tag sequence (forbidden ones score FORBIDDEN per step, as in training)."""
    transitions = crf.transitions + crf.forbidden

    def score(path: tuple[int, ...]) -> torch.Tensor:
        total = crf.start[path[0]] + emissions[0, path[0]]
        for i in range(1, len(path)):
            total = total + transitions[path[i - 1], path[i]] + emissions[i, path[i]]
        return total

    every = torch.stack([score(p) for p in itertools.product(range(len(TAGS)), repeat=len(gold))])
    return float((torch.logsumexp(every, 0) - score(tuple(gold))).detach())


def test_the_loss_is_the_mean_negative_log_likelihood_per_word_over_labelled_positions() -> None:
    torch.manual_seed(0)
    crf = ChainCRF(TAGS)
    with torch.no_grad():
        crf.start.normal_()
        crf.transitions.normal_()
    logits = torch.randn(2, 7, len(TAGS))
    # row 0: words at 1, 2, 4 (sub-tokens and special tokens are -100); row 1: words at 1, 2, 3, 5
    labels = torch.tensor([[M, 0, 1, M, 2, M, M], [M, 3, 4, 0, M, 1, M]])
    expected = exhaustive_nll(crf, logits[0, [1, 2, 4]], [0, 1, 2])
    expected += exhaustive_nll(crf, logits[1, [1, 2, 3, 5]], [3, 4, 0, 1])
    assert float(crf.loss(logits, labels).detach()) == pytest.approx(expected / 7, rel=1e-5)


def test_forbidden_transitions_are_masked_and_a_window_may_open_inside_an_entity() -> None:
    crf = ChainCRF(TAGS)
    o, b_a, i_a, b_b, i_b = range(5)
    assert crf.forbidden[o, i_a] == FORBIDDEN
    assert crf.forbidden[b_b, i_a] == FORBIDDEN
    assert crf.forbidden[b_a, i_a] == 0
    assert crf.forbidden[i_b, i_b] == 0
    assert crf.forbidden[i_a, b_b] == 0
    # a window that starts in the middle of an entity has a finite loss
    labels = torch.tensor([[M, i_a, i_a, o]])
    assert torch.isfinite(crf.loss(torch.zeros(1, 4, len(TAGS)), labels))


def test_a_window_without_labelled_words_is_an_error_not_a_silent_nan() -> None:
    with pytest.raises(ValueError, match="at least one labelled word"):
        ChainCRF(TAGS).loss(torch.zeros(2, 3, len(TAGS)), torch.tensor([[M, 0, M], [M, M, M]]))


class TinyTagger(torch.nn.Module):
    """A stand-in with the ``.logits`` output of a token-classification model."""

    config = None  # parameter_groups reads num_hidden_layers from a model's config

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, len(TAGS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.nn.Module:
        output = torch.nn.Module()
        output.logits = self.embed(input_ids)
        return output


def test_the_optimiser_trains_the_crf_faster_than_the_model_and_learns_the_gold_transitions() -> None:
    torch.manual_seed(0)
    model, crf = TinyTagger(), ChainCRF(TAGS)
    optimizer = Optimizer(
        model,
        learning_rate=1e-2,
        weight_decay=0.0,
        warmup_ratio=0.0,
        total_steps=50,
        device=torch.device("cpu"),
        precision="fp32",
        crf=crf,
        crf_learning_rate_scale=5.0,
    )
    assert sorted(group["lr"] for group in optimizer.optimizer.param_groups) == [1e-2, 5e-2]
    o, b_a, i_a = 0, 1, 2
    batch = {
        "input_ids": torch.tensor([[1, 2, 3, 4, 5]]),
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
        "labels": torch.tensor([[M, b_a, i_a, i_a, o]]),
    }
    first = optimizer.step(batch)
    for _step in range(30):
        last = optimizer.step(batch)
    assert last < first
    assert crf.transitions[b_a, i_a] > 0  # the gold pair became likelier
    assert crf.transitions[b_a, o] < 0  # its competitor less likely


def test_the_crf_needs_the_first_sub_token_policy() -> None:
    assert TrainingConfig().crf
    assert TrainingConfig().subtokens == "first"
    with pytest.raises(ValidationError, match="crf needs subtokens='first'"):
        TrainingConfig(subtokens="all")
    assert TrainingConfig(subtokens="all", crf=False).subtokens == "all"
