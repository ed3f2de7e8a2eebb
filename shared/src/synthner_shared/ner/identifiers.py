"""Structured identifiers (phones, faxes, e-mails, national IDs, dates) as entities: pattern matches with
validation (:mod:`synthner_shared.identifiers`, the leak gate's detectors) merged into a model's predicted spans.

A model trained on a few dozen phone numbers confuses them with other numeric identifiers and takes a trailing
full stop along; a validated pattern knows where a phone number starts and ends but not which label a corpus gives
it. The combination therefore has two parts, both learnt from data, never hard-wired to a label set:

- :func:`identifier_label_map` reads from the training gold which label each kind of match carries, overall
  (``phone``) and after each cue word (``phone@fax``, ``number@nhc``: the word before the match); a key is mapped
  only where most of its matches coincide exactly with a gold span of one label;
- :func:`with_identifiers` applies a map when decoding: each match of a mapped kind becomes an entity with that
  label and replaces the model's spans it overlaps. The trainer keeps only the kinds that raise strict F1 on dev
  (``synthner_trainer.training``), and the map is written with the model, so the trainer's evaluation, the
  annotator's encoder backend and the NER API decode alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from synthner_shared.contracts.spans import SpanLike
from synthner_shared.identifiers import IDENTIFIER_KINDS, IdentifierMatch, find_identifiers
from synthner_shared.ner.encoding import CharSpan, ScoredSpan

S = TypeVar("S", CharSpan, ScoredSpan)

MIN_AGREEMENT = 0.5
"""Share of a key's matches that must coincide with gold spans of one label for the key to be mapped to it."""
MIN_CUE_MATCHES = 3
"""A cue is read only where the training text has at least this many matches of a kind after it."""


def match_keys(match: IdentifierMatch) -> tuple[str, ...]:
    """The label-map keys of a match, most specific first: ``kind@cue`` (where there is a cue), then ``kind``."""
    return (f"{match.kind}@{match.cue}", match.kind) if match.cue else (match.kind,)


class IdentifierMapError(ValueError):
    """An identifier label map names an unknown kind or an empty label."""


def check_label_map(label_map: Mapping[str, str]) -> dict[str, str]:
    """``label_map`` as a plain dict after checking its kinds and labels (raises :class:`IdentifierMapError`)."""
    unknown = sorted(key for key in label_map if key.split("@", 1)[0] not in IDENTIFIER_KINDS)
    if unknown:
        raise IdentifierMapError(f"unknown identifier kinds {unknown} (known: {list(IDENTIFIER_KINDS)})")
    empty = sorted(kind for kind, label in label_map.items() if not isinstance(label, str) or not label)
    if empty:
        raise IdentifierMapError(f"identifier kinds {empty} map to an empty label")
    return dict(label_map)


def identifier_label_map(documents: Iterable[tuple[str, Sequence[SpanLike]]]) -> dict[str, str]:
    """For each key (``kind`` and ``kind@cue``, :func:`match_keys`), the gold label that most of its matches carry
    exactly (``MIN_AGREEMENT``; a cue needs ``MIN_CUE_MATCHES`` matches).

    ``documents`` are ``(text, gold spans)`` pairs, e.g. the training set. Keys with too few exact agreements are
    left out, so on a corpus that does not annotate phone numbers the phone pattern stays unused.
    """
    matches: Counter[str] = Counter()
    agreeing: dict[str, Counter[str]] = {}
    for text, spans in documents:
        gold = {(s.start, s.end): s.label for s in spans}
        for match in find_identifiers(text):
            label = gold.get((match.start, match.end))
            for key in match_keys(match):
                matches[key] += 1
                if label is not None:
                    agreeing.setdefault(key, Counter())[label] += 1
    chosen: dict[str, str] = {}
    for key, labels in agreeing.items():
        label, count = labels.most_common(1)[0]
        enough = "@" not in key or matches[key] >= MIN_CUE_MATCHES
        if enough and count >= MIN_AGREEMENT * matches[key]:
            chosen[key] = label
    return dict(sorted(chosen.items()))


def with_identifiers(text: str, spans: Sequence[CharSpan], label_map: Mapping[str, str]) -> list[CharSpan]:
    """``spans`` with each identifier of a mapped kind as an entity of the mapped label; model spans that overlap
    such an identifier are dropped."""
    kept, matches = _merge(text, spans, label_map)
    added = [CharSpan(m.start, m.end, label) for m, label, _ in matches]
    return sorted([*kept, *added], key=lambda s: (s.start, s.end))


def with_scored_identifiers(text: str, spans: Sequence[ScoredSpan], label_map: Mapping[str, str]) -> list[ScoredSpan]:
    """:func:`with_identifiers` for scored spans: an identifier takes the highest score of the model spans it
    replaces, or 1.0 where the model found nothing there (a validated pattern)."""
    kept, matches = _merge(text, spans, label_map)
    added = [
        ScoredSpan(m.start, m.end, label, max((s.score for s in replaced), default=1.0))
        for m, label, replaced in matches
    ]
    return sorted([*kept, *added], key=lambda s: (s.start, s.end))


def _merge(
    text: str, spans: Sequence[S], label_map: Mapping[str, str]
) -> tuple[list[S], list[tuple[IdentifierMatch, str, list[S]]]]:
    """The spans no mapped identifier overlaps, and each mapped identifier with its label and the spans it
    overlaps."""
    if not label_map:
        return list(spans), []
    replaced = []
    for match in find_identifiers(text):
        label = next((label_map[key] for key in match_keys(match) if key in label_map), None)
        if label is not None:
            replaced.append((match, label, [s for s in spans if s.start < match.end and match.start < s.end]))
    overlapped = {id(s) for _, _, group in replaced for s in group}
    return [s for s in spans if id(s) not in overlapped], replaced
