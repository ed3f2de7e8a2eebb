"""The chaos run's options and its result: the counts, and the one line ``benchmarks/chaos.py`` ends with."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class ChaosFailed(RuntimeError):
    """The run could not be carried out (not: it found lost notes; those are in the result)."""


@dataclass(frozen=True)
class ChaosOptions:
    workdir: Path
    notes: int = 1000
    seed: int = 7
    kill_interval_s: float = 4.0
    broker_restarts: int = 1
    annotators: int = 2
    part_size: int = 10
    llm_latency_s: float = 0.1
    llm_concurrency: int = 4
    train_documents: int = 200
    epochs: float = 1.0
    deadline_s: float = 1500.0
    stall_s: float = 120.0
    base_model: Path | None = None


@dataclass
class ChaosResult:
    sent: int = 0
    stored: int = 0
    dead_lettered: int = 0
    duplicated: int = 0
    lost: int = 0
    seconds: float = 0.0
    kills: Counter[str] = field(default_factory=Counter)
    restarts: dict[str, int] = field(default_factory=dict)
    broker_restarts: int = 0
    broker_node: str = ""
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    dead_lettered_but_stored: int = 0
    model_version: str | None = None
    answered_by: str | None = None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.failure is None
            and self.lost == 0
            and self.duplicated == 0
            and self.model_version is not None
            and self.answered_by == self.model_version
        )

    def line(self) -> str:
        return (
            f"sent={self.sent} stored={self.stored} dead_lettered={self.dead_lettered} duplicated={self.duplicated} "
            f"lost={self.lost} seconds={self.seconds:.0f}"
        )


def describe(result: ChaosResult) -> list[str]:
    """Human-readable lines about a finished run (the last line is :meth:`ChaosResult.line`)."""
    lines = [
        f"kills: {dict(sorted(result.kills.items()))}; supervisor restarts: {result.restarts}; "
        f"broker restarts: {result.broker_restarts}",
        f"dead letters by reason: {json.dumps(dict(result.dead_letter_reasons))}",
        f"notes with a dead-lettered copy that was also stored (accounted once, as stored): "
        f"{result.dead_lettered_but_stored}",
        f"model published: {result.model_version}; NER API answered with: {result.answered_by}",
    ]
    if result.failure:
        lines.append(f"run stopped early: {result.failure} (notes still on their way count as lost below)")
    return lines
