"""The chaos run's options and its result: the counts, the problems that fail the run, and the one line
``benchmarks/chaos.py`` ends with."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tests.reliability.chaos.records import Analysis, Drain, Kill, Outage

PlantedFault = Literal["drop", "raise"]


class ChaosFailed(RuntimeError):
    """The run could not be carried out (not: it found lost notes; those are in the result)."""


@dataclass(frozen=True)
class ChaosOptions:
    workdir: Path
    notes: int = 1000
    seed: int = 7
    kill_interval_s: float | None = 4.0
    """Mean seconds between two SIGKILLs; None: no SIGKILL at all (a planted-fault self-test at small size)."""
    broker_restarts: int = 1
    """Graceful broker restarts (``rabbitmqctl stop``, then start) during the flow."""
    broker_crashes: int = 1
    """Broker crashes (SIGKILL of the node's Erlang VM, then start) during the flow."""
    sigterm_drain: bool = True
    """SIGTERM an annotator while it holds notes: it must finish them, exit 0 and none may be handled again."""
    annotators: int = 2
    part_size: int = 10
    llm_latency_s: float = 0.1
    llm_concurrency: int = 4
    annotate_latency_s: float = 0.2
    """Seconds each annotator handling takes (lexicon annotators answer at once; an LLM annotator takes seconds, and
    a SIGKILL must be able to find notes in flight)."""
    train_documents: int = 200
    epochs: float = 1.0
    train: bool = True
    """Phase 2 (train, publish, ask the NER API); without it no NER API process is started."""
    deadline_s: float = 1500.0
    stall_s: float = 120.0
    settle_s: float = 8.0
    """The flow also ends once nothing is queued, retried or in flight for this long (notes still missing are lost)."""
    in_flight_wait_s: float = 5.0
    """How long the chaos monkey waits, at every other kill, for a victim that holds work in flight."""
    allowed_dead_letters: tuple[str, ...] = ()
    """Dead-letter reasons (prefixes) the run accepts; any other dead letter fails it."""
    plant_fault: PlantedFault | None = None
    """The self-test: the annotators carry this fault, and the run must fail."""
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
    kill_log: list[Kill] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    broker_restarts: int = 0
    broker_crashes: int = 0
    outages: list[Outage] = field(default_factory=list)
    drains: list[Drain] = field(default_factory=list)
    broker_node: str = ""
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    """Every dead letter drained at the end (a note's, a copy of a stored note's, or no note's), by reason."""
    allowed_dead_letters: tuple[str, ...] = ()
    dead_lettered_but_stored: int = 0
    strangers: int = 0
    """Stored notes that no planned note index owns (a note regenerated as different text after a crash)."""
    analysis: Analysis = field(default_factory=Analysis)
    planned: ChaosOptions | None = None
    model_version: str | None = None
    answered_by: str | None = None
    failure: str | None = None

    @property
    def redeliveries(self) -> int:
        return self.analysis.redeliveries

    def unexpected_dead_letters(self) -> Counter[str]:
        return Counter(
            {
                reason: count
                for reason, count in self.dead_letter_reasons.items()
                if not any(reason.startswith(allowed) for allowed in self.allowed_dead_letters)
            }
        )

    def problems(self) -> list[str]:
        """Why the run fails, one line each; empty when it passes."""
        found = []
        if self.failure:
            found.append(f"the run stopped early: {self.failure}")
        if self.lost:
            found.append(f"{self.lost} notes lost (neither stored nor dead-lettered)")
        if self.duplicated:
            found.append(
                f"{self.duplicated} duplicates: {len(self.analysis.duplicates)} unexplained repeat handlings, "
                f"{self.strangers} stored notes no planned index owns"
            )
        unexpected = self.unexpected_dead_letters()
        if unexpected:
            found.append(f"{sum(unexpected.values())} dead letters with reasons not allowed: {json.dumps(unexpected)}")
        if self.planned is not None:
            found.extend(self._plan_problems(self.planned))
        found.extend(self.analysis.drain_problems)
        return found

    def _plan_problems(self, options: ChaosOptions) -> list[str]:
        """What the run set out to do and did not (or did without effect)."""
        found = []
        if options.kill_interval_s is not None:
            if self.analysis.in_flight_kills == 0:
                found.append("no SIGKILL hit a process holding work in flight: the kills proved nothing")
            if self.redeliveries == 0:
                found.append("no message held by a SIGKILLed process was redelivered: the kills proved nothing")
        if self.broker_restarts < options.broker_restarts:
            found.append(f"{self.broker_restarts} of {options.broker_restarts} broker restarts done")
        if self.broker_crashes < options.broker_crashes:
            found.append(f"{self.broker_crashes} of {options.broker_crashes} broker crashes done")
        if options.sigterm_drain and not self.drains:
            found.append("no SIGTERM drain was done")
        if options.train and self.model_version is None:
            found.append("no model was published")
        elif options.train and self.answered_by != self.model_version:
            found.append(f"the NER API answered with {self.answered_by}, not the published {self.model_version}")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()

    def line(self) -> str:
        return (
            f"sent={self.sent} stored={self.stored} dead_lettered={self.dead_lettered} duplicated={self.duplicated} "
            f"lost={self.lost} redeliveries={self.redeliveries} kills={sum(self.kills.values())} "
            f"broker_crashes={self.broker_crashes} seconds={self.seconds:.0f}"
        )


def describe(result: ChaosResult) -> list[str]:
    """Human-readable lines about a finished run (the last line is :meth:`ChaosResult.line`)."""
    analysis = result.analysis
    allowed = ", ".join(repr(a) for a in result.allowed_dead_letters) or "none"
    lines = [
        f"kills: {dict(sorted(result.kills.items()))} ({analysis.in_flight_kills} hit work in flight); "
        f"supervisor restarts: {result.restarts}",
        f"broker: {result.broker_restarts} graceful restarts, {result.broker_crashes} crashes (SIGKILL)",
        f"redeliveries after a SIGKILL: {analysis.redeliveries} messages held in flight were handled again "
        f"({len(analysis.lost_in_flight)} held in flight were never handled again)",
        f"handlings per stage: {json.dumps(dict(sorted(analysis.handled.items())))}; repeated completions: "
        f"{json.dumps(dict(sorted(analysis.repeats.items())))}",
        "SIGTERM drains: "
        + (
            "; ".join(f"{d.process} holding {d.held} handlings, exit code {d.exit_code}" for d in result.drains)
            or "none"
        ),
        f"dead-letter reasons allowed: {allowed}",
        f"dead letters by reason: {json.dumps(dict(result.dead_letter_reasons))}",
        f"notes with a dead-lettered copy that was also stored (accounted once, as stored): "
        f"{result.dead_lettered_but_stored}",
        f"model published: {result.model_version}; NER API answered with: {result.answered_by}",
    ]
    if analysis.planted:
        lines.append(f"planted faults struck: {json.dumps(dict(analysis.planted))}")
    if analysis.duplicates:
        shown = ", ".join(key.split(":", 1)[0] + ":" + key.split(":", 1)[1][:12] for key in analysis.duplicates[:5])
        lines.append(f"unexplained repeats (first 5, ids cut): {shown}")
    problems = result.problems()
    lines.extend(f"FAILED: {problem}" for problem in problems)
    if not problems:
        lines.append("passed: nothing lost, duplicated or dead-lettered, and every planned fault had its effect")
    return lines
