"""What the generator needs from an LLM: one prompt in, one completion out, with typed failures.

Adapters translate a wire format's errors into :class:`LLMTransientError` (worth retrying: time-outs, 429, 5xx,
connection errors) or :class:`LLMPermanentError` (4xx: retrying cannot help). Messages name status codes and error
types only, never prompt or reply text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from synthner_shared.contracts import SamplingParameters

FinishReason = Literal["stop", "length", "other"]


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: instructions, and for prefix generation the opening words the note must continue."""

    instruction: str
    prefix: str = ""
    sampling: SamplingParameters = field(default_factory=SamplingParameters)
    seed: int = 0
    context: str = ""
    """Prefix mode: text the model reads before the prefix, not part of the note (identifier-free sentences of
    another real note)."""

    def continuation(self) -> str:
        """The text a plain completion continues: the context, a blank line, the prefix."""
        return f"{self.context}\n\n{self.prefix}" if self.context else self.prefix


@dataclass(frozen=True)
class Completion:
    """The reply: its text (for a prefix prompt, the continuation only) and why generation stopped."""

    text: str
    finish_reason: FinishReason


class LLMError(Exception):
    """An LLM call failed; the message is safe to log and to put into GenerationFailed."""


class LLMTransientError(LLMError):
    """A failure worth retrying (time-out, 429, 5xx, connection refused or reset)."""


class LLMPermanentError(LLMError):
    """A failure retrying cannot fix (a 4xx other than 408/429, a malformed reply)."""


class LLMClient(Protocol):
    """One adapter per wire format. ``backend`` and ``model`` are recorded in every note."""

    @property
    def backend(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def complete(self, prompt: Prompt) -> Completion: ...

    async def aclose(self) -> None: ...


TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def is_transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUS or status >= 500


@dataclass(frozen=True)
class Attempted:
    """A completion, or the last error, and how many tries it took."""

    completion: Completion | None
    attempts: int
    error: LLMError | None = None


async def complete_with_retries(
    client: LLMClient, prompt: Prompt, attempts: int, backoff_s: Sequence[float], limit: asyncio.Semaphore
) -> Attempted:
    """Call the LLM, holding one of ``limit``'s slots per try (not while backing off), retrying transient errors."""
    last: LLMError | None = None
    for attempt in range(1, attempts + 1):
        try:
            async with limit:
                return Attempted(await client.complete(prompt), attempt)
        except LLMPermanentError as exc:
            return Attempted(None, attempt, exc)
        except LLMTransientError as exc:
            last = exc
        if attempt < attempts:
            await asyncio.sleep(backoff_s[min(attempt, len(backoff_s)) - 1])
    return Attempted(None, attempts, last)
