"""Progress bars on stderr for the CLI's long work (documents, training steps, demo stages).

One small wrapper over tqdm, so every command draws bars the same way: on stderr only, only when stderr is a
terminal and ``--no-progress`` was not given, and never with note text (descriptions and postfixes are fixed words
and numbers chosen by the caller).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Protocol, Self, TextIO, TypeVar

from tqdm import tqdm


def wanted(no_progress: bool, stream: TextIO | None = None) -> bool:
    """Whether to draw bars: not turned off, and the stream (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    if no_progress:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class Bar:
    """A counter with an optional bar. Disabled, it only counts, so callers need no ``if``; disabled with a ``lines``
    stream (a log file, a pipe: no terminal to draw on), it also writes one plain line at each tenth of the total."""

    def __init__(
        self,
        total: float | None,
        description: str,
        *,
        enabled: bool,
        unit: str = "doc",
        stream: TextIO | None = None,
        position: int | None = None,
        lines: TextIO | None = None,
    ) -> None:
        self.total = total
        self.count: float = 0
        self._bar = None
        self._description = description
        self._unit = unit
        self._lines = None if enabled else lines
        self._postfix: dict[str, float | int | str] = {}
        self._tenths_written = 0
        if enabled:
            self._bar = tqdm(
                total=total,
                desc=description,
                unit=unit,
                file=sys.stderr if stream is None else stream,
                leave=True,
                dynamic_ncols=True,
                mininterval=0.5,
                position=position,
            )

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def advance(self, amount: float = 1) -> None:
        self.count += amount
        if self._bar is not None:
            self._bar.update(amount)
        else:
            self._write_line()

    def _write_line(self) -> None:
        """One line per tenth of the total reached: ``generating notes: 48/120 notes (generated=48, other=0)``."""
        if self._lines is None or not self.total:
            return
        tenths = min(10, int(10 * self.count / self.total))
        if tenths <= self._tenths_written:
            return
        self._tenths_written = tenths
        figures = ", ".join(f"{name}={value}" for name, value in self._postfix.items())
        after = f" ({figures})" if figures else ""
        print(f"{self._description}: {self.count:g}/{self.total:g} {self._unit}s{after}", file=self._lines, flush=True)

    def update_to(self, count: float, total: float | None = None) -> None:
        """Set the absolute position (and optionally a new total): for callbacks that report "step n of m"."""
        if total is not None and total != self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
        self.advance(count - self.count)

    def note(self, **numbers: float | int | str) -> None:
        """Figures shown after the bar, or in the next plain line (loss, F1, counts); set them before ``advance``.
        Pass numbers and fixed words only, never note text."""
        self._postfix = dict(numbers)
        if self._bar is not None:
            self._bar.set_postfix(numbers, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


@contextmanager
def bar(
    total: float | None, description: str, *, enabled: bool, unit: str = "doc", stream: TextIO | None = None
) -> Iterator[Bar]:
    """``with bar(len(docs), "annotating", enabled=wanted(args.no_progress)) as progress: ... progress.advance()``"""
    progress = Bar(total, description, enabled=enabled, unit=unit, stream=stream)
    try:
        yield progress
    finally:
        progress.close()


class StepUpdate(Protocol):
    """What the trainer reports (``synthner_trainer.training.Progress``), structurally: numbers only."""

    @property
    def epoch(self) -> float: ...
    @property
    def step(self) -> int: ...
    @property
    def total_steps(self) -> int: ...
    @property
    def loss(self) -> float: ...
    @property
    def dev_f1(self) -> float | None: ...


Update = TypeVar("Update", bound=StepUpdate)


def follow_training(steps: Bar, log: Callable[[Update], None]) -> Callable[[Update], None]:
    """A trainer progress callback: moves the bar to step n of m with epoch, loss and dev F1 after it; without a
    bar, ``log`` (the trainer's ``log_progress``) writes the usual log line instead."""

    def progress(update: Update) -> None:
        if not steps.enabled:
            log(update)
        figures: dict[str, float] = {"epoch": round(update.epoch, 2), "loss": round(update.loss, 4)}
        if update.dev_f1 is not None:
            figures["dev_f1"] = round(update.dev_f1, 4)
        steps.note(**figures)
        steps.update_to(update.step, update.total_steps)

    return progress
