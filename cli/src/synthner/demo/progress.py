"""What the demo shows while it runs: bars for generation, annotation and training (numbers only, never note text),
the learning curve it records, and the stage the run is in (for the deadline's one-line error)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from synthner.progress import Bar, follow_training
from synthner_shared.contracts import AnnotationFailed, DocumentAnnotated, Envelope, GenerationProgress

if TYPE_CHECKING:
    from types import TracebackType

    from synthner_trainer.training import Progress


ProgressView = Literal["bars", "lines", "off"]
"""How progress shows: bars on a terminal, a plain line on stdout at each tenth (a pipe, a log file), or not at all
(``--no-progress``)."""


@dataclass
class CurrentStage:
    """The stage the run is in, for the deadline's error message."""

    name: str = "starting"


class StageBars:
    """Progress of generation (notes finished of those requested) and annotation (documents of the notes
    generated), fed with every message the run sees. Numbers only: no note text reaches the terminal. Without bars,
    ``lines`` (where given) gets a plain line at each tenth."""

    def __init__(self, notes: int, view: ProgressView) -> None:
        enabled, lines = view == "bars", sys.stdout if view == "lines" else None
        self.generation = Bar(notes, "generating notes", enabled=enabled, unit="note", position=0, lines=lines)
        self.annotation = Bar(notes, "annotating", enabled=enabled, unit="note", position=1, lines=lines)
        self.generated = 0
        self.rejected = 0

    def see(self, message: Envelope) -> None:
        if isinstance(message, GenerationProgress) and message.event == "part":
            self.generated += message.generated
            self.rejected += message.requested - message.generated
            self.generation.note(generated=self.generated, other=self.rejected)
            self.generation.advance(message.requested)
            if self.generation.total is not None and self.generation.count >= self.generation.total:
                self.annotation.update_to(self.annotation.count, total=self.generated)
        elif isinstance(message, DocumentAnnotated | AnnotationFailed):
            self.annotation.advance()

    def close(self) -> None:
        self.generation.close()
        self.annotation.close()


class TrainingCurve:
    """The trainer's progress callback for an in-process training: a bar of steps (or the trainer's log line without
    one) and the learning curve, one point per finished epoch (the dev F1 is measured at each epoch's end)."""

    def __init__(self, view: ProgressView, description: str = "training") -> None:
        from synthner_trainer.training import log_progress

        lines = sys.stdout if view == "lines" else None
        self.steps = Bar(None, description, enabled=view == "bars", unit="step", lines=lines)
        self.history: list[dict[str, float]] = []
        self._follow: Callable[[Progress], None] = follow_training(self.steps, log_progress)

    def __call__(self, update: Progress) -> None:
        self._follow(update)
        if update.dev_f1 is not None:
            self.history.append({"epoch": round(update.epoch, 2), "loss": update.loss, "dev_strict_f1": update.dev_f1})

    def __enter__(self) -> TrainingCurve:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.steps.close()
