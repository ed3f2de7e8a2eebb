"""The demo's teacher: the encoder fine-tuned on the real gold train split. It labels the synthetic notes (the
annotator's encoder backend loads it) and is the reference the synthetic-only model is measured against."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from synthner.demo.options import DemoError, DemoOptions
from synthner.demo.progress import TrainingCurve

if TYPE_CHECKING:
    from synthner_trainer.settings import TrainingConfig


@dataclass(frozen=True)
class Teacher:
    documents: int
    strict_f1: float
    """On the demo's gold set (the real test split), as the student is scored."""
    partial_f1: float
    epochs_run: int
    tokens_per_second: float
    seconds: float


def teacher_folder(options: DemoOptions) -> Path:
    return options.workdir / "teacher"


def teacher_config(options: DemoOptions) -> TrainingConfig:
    """How the teacher trains (bounded by ``options.teacher_seconds`` as well as its epochs)."""
    from synthner_trainer.settings import TrainingConfig
    from synthner_trainer.training import fastest_precision

    return TrainingConfig(
        epochs=options.teacher_epochs,
        learning_rate=3e-4,
        batch_size=16,
        max_length=128,
        stride=32,
        seed=options.seed,
        precision=fastest_precision("cpu"),
    )


def train_teacher(options: DemoOptions, gold_path: Path) -> Teacher:
    """Fine-tune the base encoder on ``--lexicon-source`` (its first ``--teacher-documents``; early-stopped on
    ``--gold-dev``, within ``--teacher-seconds``), score it on the gold set, and write it to ``<workdir>/teacher``."""
    from synthner_shared.documents import read_documents
    from synthner_trainer.base_model import default_base_model
    from synthner_trainer.pipeline import GoldSet, train_to_folder

    started = time.perf_counter()
    train = list(read_documents(options.lexicon_source))[: options.teacher_documents]
    dev = list(read_documents(options.gold_dev))[: options.gold_limit]
    if not dev:
        raise DemoError(f"--gold-dev {options.gold_dev} is empty: the teacher needs gold dev documents")
    base_model = default_base_model()
    bound = f"{options.teacher_epochs:g} epochs"
    if options.teacher_seconds is not None:
        bound += f" or {options.teacher_seconds:.0f} s"
    print(
        f"teacher: fine-tuning all-MiniLM-L6-v2 on {len(train)} real gold documents ({options.lexicon_source.name}),"
        f" {bound} at most ...",
        flush=True,
    )
    with TrainingCurve(options.progress, "teacher training") as curve:
        result, metrics = train_to_folder(
            train,
            teacher_folder(options),
            base_model,
            teacher_config(options),
            dev=dev,
            gold=GoldSet.read(gold_path),
            labels=["Disease"],
            device="cpu",
            max_seconds=options.teacher_seconds,
            progress=curve,
        )
    scores = metrics[-1]
    teacher = Teacher(
        documents=len(train),
        strict_f1=scores.strict_micro.f1,
        partial_f1=scores.partial_micro.f1,
        epochs_run=result.epochs_run,
        tokens_per_second=result.tokens_per_second,
        seconds=time.perf_counter() - started,
    )
    print(
        f"teacher: strict F1 {teacher.strict_f1:.4f} on the gold set (the gold-trained reference) after"
        f" {teacher.epochs_run} epochs, {teacher.seconds:.0f} s at {teacher.tokens_per_second:.0f} tokens/s",
        flush=True,
    )
    return teacher
