"""Quality filters for an LLM reply: empty, truncated, refusing, too short or too long replies are rejected.

Nothing is cut to fit: a reply over the length bound is rejected, never truncated. A reply the LLM itself ended at its
token limit is rejected too, unless the settings keep its whole sentences (``truncated="whole_sentences"``): it is
then cut after its last complete sentence or line, and the stored note says so (``cut_at_sentence``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from synthner_generator.llm import Completion

REFUSALS = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry, but|i cannot|i can'?t|as an ai|i am unable|i'm unable"
    r"|lo siento|no puedo|como modelo de lenguaje"
    r"|jag kan inte|tyvärr kan jag|som en ai"
    r"|vabandust|ma ei saa|tehisintellektina)",
    re.IGNORECASE,
)
"""Openings of a refusal (en, es, sv, et), checked at the start of the reply only: a note may say 'sorry' later."""


SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)|\n")
"""Where a complete sentence or line ends: a full stop, question or exclamation mark (closing quotes or brackets kept)
followed by white space, or a line break."""

Truncated = Literal["reject", "whole_sentences"]


@dataclass(frozen=True)
class QualityBounds:
    min_chars: int
    max_chars: int
    truncated: Truncated = "reject"


@dataclass(frozen=True)
class CheckedReply:
    text: str
    """The note as it would be stored (cut after its last whole sentence where ``cut``)."""
    rule: str | None
    """Why it is not a usable note (a short rule name), or None."""
    cut: bool = False


def check_reply(completion: Completion, text: str, bounds: QualityBounds) -> CheckedReply:
    """The reply as a note, and why it is not usable (None: it is). ``text`` is the note as it would be stored."""
    if completion.finish_reason == "length" and bounds.truncated == "whole_sentences":
        whole = whole_sentences(text)
        if whole is not None:
            return CheckedReply(whole, reject_reason(completion, whole, bounds, cut=True), cut=True)
    return CheckedReply(text, reject_reason(completion, text, bounds))


def whole_sentences(text: str) -> str | None:
    """``text`` up to the end of its last complete sentence or line (trailing space dropped); None if it has none."""
    ends = [match.end() for match in SENTENCE_END.finditer(text)]
    if not ends:
        return None
    kept = text[: ends[-1]].rstrip()
    return kept or None


def reject_reason(completion: Completion, text: str, bounds: QualityBounds, *, cut: bool = False) -> str | None:
    """Why the reply is not a usable note (a short rule name), or None. ``text`` is the note as it would be stored;
    ``cut``: the LLM's truncated reply was already cut after its last whole sentence."""
    if not text.strip():
        return "empty"
    if completion.finish_reason == "length" and not cut:
        return "truncated"
    if REFUSALS.match(text):
        return "refusal"
    if len(text) < bounds.min_chars:
        return "too_short"
    if len(text) > bounds.max_chars:
        return "too_long"
    return None
