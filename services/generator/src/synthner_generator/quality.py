"""Quality filters for an LLM reply: empty, truncated, refusing, too short or too long replies are rejected.

Nothing is cut to fit: a reply over the length bound is rejected, never truncated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from synthner_generator.llm import Completion

REFUSALS = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry, but|i cannot|i can'?t|as an ai|i am unable|i'm unable"
    r"|lo siento|no puedo|como modelo de lenguaje"
    r"|jag kan inte|tyvärr kan jag|som en ai"
    r"|vabandust|ma ei saa|tehisintellektina)",
    re.IGNORECASE,
)
"""Openings of a refusal (en, es, sv, et), checked at the start of the reply only: a note may say 'sorry' later."""


@dataclass(frozen=True)
class QualityBounds:
    min_chars: int
    max_chars: int


def reject_reason(completion: Completion, text: str, bounds: QualityBounds) -> str | None:
    """Why the reply is not a usable note (a short rule name), or None. ``text`` is the note as it would be stored."""
    if not text.strip():
        return "empty"
    if completion.finish_reason == "length":
        return "truncated"
    if REFUSALS.match(text):
        return "refusal"
    if len(text) < bounds.min_chars:
        return "too_short"
    if len(text) > bounds.max_chars:
        return "too_long"
    return None
