"""The data-amount experiment: train on growing fractions of a dataset and score each model on the same test set."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from synthner_shared.documents import Document
from synthner_shared.evaluation import evaluate_spans
from synthner_trainer.settings import TrainingConfig
from synthner_trainer.training import ProgressCallback, fine_tune, log_progress, prepare


@dataclass(frozen=True)
class CurvePoint:
    fraction: float
    documents: int
    strict_f1: float
    partial_f1: float
    seconds: float


def nested_subsets(documents: Sequence[Document], fractions: Sequence[float], seed: int) -> list[list[Document]]:
    """One shuffle, then prefixes: each smaller subset is contained in every larger one (at least one document)."""
    if not documents:
        raise ValueError("no training documents")
    if any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {list(fractions)}")
    order = list(documents)
    random.Random(seed).shuffle(order)  # noqa: S311 - reproducible sampling, not security
    return [order[: max(1, round(len(order) * f))] for f in fractions]


def learning_curve(
    train: Sequence[Document],
    dev: Sequence[Document],
    test: Sequence[Document],
    fractions: Sequence[float],
    *,
    base_model: Path,
    config: TrainingConfig,
    device: str = "auto",
    patience: int = 2,
    progress: ProgressCallback = log_progress,
) -> list[CurvePoint]:
    """Train one model per fraction (same seed, dev set and hyper-parameters) and score it on ``test``."""
    points = []
    for fraction, subset in zip(fractions, nested_subsets(train, fractions, config.seed), strict=True):
        started = time.perf_counter()
        result = fine_tune(
            prepare(subset, dev, base_model, config), device=device, patience=patience, progress=progress
        )
        scores = evaluate_spans(test, result.predictor().predict_documents(test), "test")
        points.append(
            CurvePoint(
                fraction, len(subset), scores.strict_micro.f1, scores.partial_micro.f1, time.perf_counter() - started
            )
        )
    return points
