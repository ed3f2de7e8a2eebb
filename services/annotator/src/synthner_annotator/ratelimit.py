"""Per-endpoint limits: requests and tokens per minute (token buckets), and the back-off before a retry."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Bucket:
    capacity: float
    level: float
    per_second: float

    def refill(self, elapsed: float) -> None:
        self.level = min(self.capacity, self.level + elapsed * self.per_second)

    def wait_for(self, amount: float) -> float:
        return 0.0 if self.level >= amount else (amount - self.level) / self.per_second


class RateLimiter:
    """Requests-per-minute and tokens-per-minute budgets, refilled continuously; ``None`` means unlimited.

    Callers acquire in FIFO order (one waiter at a time), so a large request is not starved by small ones. A request
    estimated above the whole per-minute token budget waits for a full bucket rather than forever.
    """

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last = clock()
        self._requests = (
            _Bucket(requests_per_minute, requests_per_minute, requests_per_minute / 60) if requests_per_minute else None
        )
        self._tokens = (
            _Bucket(tokens_per_minute, tokens_per_minute, tokens_per_minute / 60) if tokens_per_minute else None
        )

    def _refill(self) -> None:
        now = self._clock()
        elapsed, self._last = max(0.0, now - self._last), now
        for bucket in (self._requests, self._tokens):
            if bucket is not None:
                bucket.refill(elapsed)

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of about ``tokens`` tokens fits both budgets, then take it."""
        async with self._lock:
            while True:
                self._refill()
                wanted = min(float(tokens), self._tokens.capacity) if self._tokens is not None else 0.0
                wait = max(
                    self._requests.wait_for(1.0) if self._requests is not None else 0.0,
                    self._tokens.wait_for(wanted) if self._tokens is not None else 0.0,
                )
                if wait <= 0:
                    if self._requests is not None:
                        self._requests.level -= 1.0
                    if self._tokens is not None:
                        self._tokens.level -= wanted
                    return
                await self._sleep(wait)

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token budget once the reply says how many tokens the request really used."""
        if self._tokens is not None:
            self._tokens.level = min(self._tokens.capacity, self._tokens.level + estimated - actual)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The server's requested wait: ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    milliseconds = lowered.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with equal jitter: attempt ``n`` waits between half and all of ``initial * 2**(n-1)``
    (capped at ``maximum``). A server's ``Retry-After`` wins when it asks for longer (capped at ``retry_after_max``)."""

    initial_s: float = 1.0
    maximum_s: float = 60.0
    retry_after_max_s: float = 600.0

    def delay(self, attempt: int, retry_after: float | None, random_unit: float) -> float:
        if retry_after:  # the server knows best when it will take requests again
            return min(retry_after, self.retry_after_max_s)
        ceiling: float = min(self.maximum_s, self.initial_s * 2.0 ** max(0, attempt - 1))
        return ceiling / 2 + ceiling / 2 * random_unit
