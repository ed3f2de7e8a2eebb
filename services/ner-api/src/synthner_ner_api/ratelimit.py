"""Per-caller rate limits: one token bucket per API key owner (or proxy user), kept in this replica's memory.

A bucket holds at most ``burst`` tokens and refills at ``rate_per_s``. A request takes one token before its body is
read; without one it is answered 429 with ``Retry-After`` (the seconds until a token is back). A batch request is
charged its other texts once it has been read (:meth:`TokenBuckets.charge`): the bucket may go into debt, and the
caller's next requests wait until it is paid back, so batching does not multiply a caller's share of the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_CALLERS = 10_000
"""Buckets kept at most; beyond, full (idle) buckets are forgotten, which changes nothing for their callers."""


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, caller: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= MAX_CALLERS:
                self._forget_idle(now)
            bucket = self._buckets[caller] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate_per_s)
            bucket.stamp = now
        return bucket

    def _forget_idle(self, now: float) -> None:
        idle = [
            caller
            for caller, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.stamp) * self.rate_per_s >= self.burst
        ]
        for caller in idle:
            del self._buckets[caller]

    def take(self, caller: str) -> int:
        """Take one token: 0 when the request may go on, else the whole seconds to wait (``Retry-After``)."""
        bucket = self._bucket(caller)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self.rate_per_s))

    def charge(self, caller: str, tokens: float) -> None:
        """Take ``tokens`` more for work already admitted (a batch's other texts); the bucket may go into debt, down
        to one burst below empty."""
        if tokens <= 0:
            return
        bucket = self._bucket(caller)
        bucket.tokens = max(-float(self.burst), bucket.tokens - tokens)
