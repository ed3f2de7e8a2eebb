"""Character spans of the annotator's domain and the declared overlap policy.

Offsets are code points of the note text, end exclusive, as in every synthner message.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

OverlapPolicy = Literal["longest", "first"]
"""How overlapping candidate spans are resolved (the published document has no overlaps):

- ``longest``: the longest span wins; ties go to the earlier start, then to the earlier proposal;
- ``first``: the earliest proposed span wins (the annotator's own order of mentions).
"""


@dataclass(frozen=True, order=True)
class Span:
    """An entity span. ``rank`` is the order of proposal (used by the overlap policy), not part of the output."""

    start: int
    end: int
    label: str
    score: float | None = None
    source: str | None = None
    rank: int = 0

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def key(self) -> tuple[int, int, str]:
        return self.start, self.end, self.label

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end

    def shifted(self, offset: int) -> Span:
        return replace(self, start=self.start + offset, end=self.end + offset)


def _priority(policy: OverlapPolicy, span: Span) -> tuple[float, ...]:
    if policy == "longest":
        return (-span.length, span.start, span.rank)
    return (span.rank, span.start, -span.length)


def resolve_overlaps(spans: Iterable[Span], policy: OverlapPolicy = "longest") -> tuple[list[Span], list[Span]]:
    """Keep a non-overlapping subset by ``policy``; returns ``(kept sorted by offset, rejected)``.

    Exact duplicates (same start, end and label) are merged into the first, which is kept or rejected once.
    """
    unique: dict[tuple[int, int, str], Span] = {}
    rejected: list[Span] = []
    for span in spans:
        if span.key in unique:
            rejected.append(span)
        else:
            unique[span.key] = span
    kept: list[Span] = []  # sorted by start; non-overlapping, so also sorted by end
    starts: list[int] = []
    for span in sorted(unique.values(), key=lambda s: _priority(policy, s)):
        at = bisect.bisect_left(starts, span.start)
        clash = (at > 0 and kept[at - 1].end > span.start) or (at < len(kept) and kept[at].start < span.end)
        if clash:
            rejected.append(span)
        else:
            kept.insert(at, span)
            starts.insert(at, span.start)
    return kept, rejected


def sorted_spans(spans: Sequence[Span]) -> list[Span]:
    return sorted(spans, key=lambda s: (s.start, s.end, s.label))
