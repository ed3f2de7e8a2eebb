"""A plain cumulative histogram of durations, kept by the consumer runner and read by the metrics at scrape time."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

HANDLER_BUCKETS_S: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
"""Upper bounds (seconds) for handler durations: a lexicon answers in milliseconds, an LLM annotation in minutes."""


@dataclass
class Durations:
    """Counts per bucket (``le`` upper bounds, the last one +Inf), their sum and count."""

    bounds: tuple[float, ...] = HANDLER_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total_s: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(self.bounds):
            raise ValueError("bucket bounds must be increasing")
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total_s += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs as Prometheus exposes them, ending with ``+Inf``."""
        running = 0
        out: list[tuple[str, int]] = []
        for bound, count in zip((*map(_le, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))
