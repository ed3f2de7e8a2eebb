"""Abbreviations a text defines, carried to their other mentions (a decoding step, torch-free).

Biomedical and clinical texts define a short form once, right after its long form — ``dentatorubral-pallidoluysian
atrophy (DRPLA)`` — and then use the short form alone. A token classifier often tags the long form but misses the
bare short form, whose context says little. When a predicted entity is directly followed by ``(SF)`` and ``SF`` can
abbreviate it (Schwartz & Hearst's test: its first character starts the long form, its letters and digits occur there
in order), every mention of ``SF`` in the text that no entity covers becomes an entity with the long form's label.

Nothing is added where the long form was not predicted (``phenylalanine hydroxylase (PAH)`` stays a gene) or where
``SF`` does not fit it (``aniridia (PAX6)``). Whether a model decodes with this step is chosen on dev by the trainer
and stored in its ``encoding.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from synthner_shared.ner.encoding import CharSpan

_DEFINITION = re.compile(r"\(\s*([^\W_][\w\-/]{1,9}?)\s*\)")
"""``(SF)``: 2-10 characters, starting with a letter or digit, no spaces."""


@dataclass(frozen=True)
class Definition:
    """``short`` defined in parentheses that open at ``paren``."""

    short: str
    paren: int


@dataclass(frozen=True)
class Expansion:
    """A mention of a defined short form (``span``) and the predicted long-form entity it abbreviates (``source``)."""

    span: CharSpan
    source: CharSpan


def definitions(text: str) -> Iterator[Definition]:
    """Every ``(SF)`` in ``text`` that looks like an abbreviation: it has a capital letter and is not only digits."""
    for match in _DEFINITION.finditer(text):
        short = match.group(1)
        if any(c.isupper() for c in short) and not short.isdigit():
            yield Definition(short, match.start())


def can_abbreviate(short: str, long: str) -> bool:
    """Schwartz & Hearst's test: ``short``'s first character starts ``long``, its letters and digits occur in order."""
    chars = [c.lower() for c in short if c.isalnum()]
    long = long.lower()
    if not chars or not long.startswith(chars[0]):
        return False
    position = 1
    for char in chars[1:]:
        position = long.find(char, position) + 1
        if position == 0:
            return False
    return True


def mentions(text: str, short: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of every occurrence of ``short`` that is a whole word (case-sensitive)."""
    for match in re.finditer(r"(?<![\w\-])" + re.escape(short) + r"(?![\w\-])", text):
        yield match.start(), match.end()


def expand_abbreviations(text: str, spans: Sequence[CharSpan]) -> list[Expansion]:
    """New entities for the mentions of short forms whose predicted long form ``spans`` holds (none overlap ``spans``
    or each other); the first definition of a short form decides its label."""
    sources: dict[str, CharSpan] = {}
    for definition in definitions(text):
        for span in spans:
            if (
                span.end <= definition.paren
                and not text[span.end : definition.paren].strip()
                and can_abbreviate(definition.short, text[span.start : span.end])
            ):
                sources.setdefault(definition.short, span)
    taken = list(spans)
    added: list[Expansion] = []
    for short, source in sources.items():
        for start, end in mentions(text, short):
            if not any(start < other.end and other.start < end for other in taken):
                span = CharSpan(start, end, source.label)
                taken.append(span)
                added.append(Expansion(span, source))
    return added


def with_abbreviations(text: str, spans: Sequence[CharSpan]) -> list[CharSpan]:
    """``spans`` plus :func:`expand_abbreviations`' new entities, in text order."""
    added = [expansion.span for expansion in expand_abbreviations(text, spans)]
    return sorted([*spans, *added], key=lambda span: (span.start, span.end))
