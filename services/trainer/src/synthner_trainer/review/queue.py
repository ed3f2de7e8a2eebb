"""Which annotated notes a human should review: a stable random share, notes where annotators disagree, and notes
where a confident annotator (an encoder) was not confident. Pure functions over what the store holds."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Reason = Literal["disagreement", "low-confidence", "sample"]


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str
    score: float | None = None


@dataclass(frozen=True)
class Annotation:
    """One annotator's spans of a note, as the store keeps them (``prompt``: ``name/version`` when a prompt made
    them)."""

    annotator: str
    spans: tuple[Span, ...]
    prompt: str | None = None


@dataclass(frozen=True)
class Candidate:
    note_id: str
    annotations: tuple[Annotation, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class QueuePolicy:
    """What goes into the review queue. ``share``: this share of all notes, chosen by a hash of seed and note id, so a
    note's fate does not depend on which other notes exist or their order; ``disagreement``: every note whose
    annotators' spans differ; ``min_confidence``: every note with a span scored below it."""

    share: float = 0.0
    disagreement: bool = False
    min_confidence: float | None = None
    seed: int = 13

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share must be within 0..1, got {self.share}")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be within 0..1, got {self.min_confidence}")


def sampled(note_id: str, share: float, seed: int) -> bool:
    """True for about ``share`` of all note ids, the same answer every time for one seed."""
    digest = hashlib.sha256(f"{seed}:{note_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def disagree(annotations: Sequence[Annotation]) -> bool:
    """Two or more annotators whose (start, end, label) sets differ."""
    seen = {frozenset((s.start, s.end, s.label) for s in a.spans) for a in annotations}
    return len(annotations) > 1 and len(seen) > 1


def lowest_score(annotations: Iterable[Annotation]) -> float | None:
    scores = [s.score for a in annotations for s in a.spans if s.score is not None]
    return min(scores) if scores else None


def reason_for(candidate: Candidate, policy: QueuePolicy) -> Reason | None:
    """Why ``candidate`` needs review under ``policy`` (the strongest reason), or None."""
    if policy.disagreement and disagree(candidate.annotations):
        return "disagreement"
    low = lowest_score(candidate.annotations)
    if policy.min_confidence is not None and low is not None and low < policy.min_confidence:
        return "low-confidence"
    if sampled(candidate.note_id, policy.share, policy.seed):
        return "sample"
    return None


def select_for_review(candidates: Iterable[Candidate], policy: QueuePolicy) -> list[tuple[str, Reason]]:
    """The notes to review, in the order given, each with its reason."""
    chosen: list[tuple[str, Reason]] = []
    for candidate in candidates:
        reason = reason_for(candidate, policy)
        if reason is not None:
            chosen.append((candidate.note_id, reason))
    return chosen
