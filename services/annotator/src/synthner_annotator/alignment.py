"""Alignment of proposed mentions (label + surface text, no offsets) to code-point spans of the original text.

Policy, declared here because every annotator's output depends on it:

- **Matching** is done in a normalised copy of the text (:mod:`synthner_annotator.normalization`: case, whitespace
  runs, Unicode compatibility forms, quote and dash variants); when that finds nothing, again with diacritics
  removed. Offsets always come back to the original text through the index map. A mention that is found in neither
  is **dropped and counted, never guessed** (no fuzzy matching).
- **Repeated mentions**, ``mode="in_order"`` (default): the list is read as mentions in order of appearance; each
  mention takes one free occurrence, preferring (in this order) one that does not overlap a span already placed,
  one on word boundaries, one at or after the previous mention's end, one not inside an occurrence of a longer
  mention of the same list, one that is not hyphen-joined to a neighbouring word ("PWS" standing alone rather than
  inside "PWS-IC"), an exact (case-sensitive) match, and finally the earliest. The list is placed a second
  time with the order and containment preferences swapped (reading it as out of order); the reading that places
  more mentions wins, the in-order one on a tie. A mention with a position hint (inline markup) takes the free
  occurrence nearest the hint instead. A mention whose every occurrence is taken is dropped. ``mode="all"``: every
  word-bounded occurrence of every distinct mention becomes a span.
- **Overlaps** between the resulting spans are resolved by the declared :data:`~synthner_annotator.spans.OverlapPolicy`.
- **Labels** are matched to the declared set ignoring case; a mention with any other label is dropped and counted.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from synthner_annotator.normalization import (
    DEFAULT_OPTIONS,
    NormalizationOptions,
    NormalizedText,
    normalize,
    normalize_key,
)
from synthner_annotator.spans import OverlapPolicy, Span, resolve_overlaps
from synthner_shared.contracts import AlignmentStats

RepeatMode = Literal["in_order", "all"]


@dataclass(frozen=True)
class ProposedMention:
    """A mention as an annotator proposes it. ``hint``: its approximate offset in the text, when known."""

    label: str
    text: str
    hint: int | None = None


@dataclass
class AlignmentReport:
    """The spans placed and what happened to every proposed mention (counts only: no text, safe to log)."""

    spans: list[Span] = field(default_factory=list)
    proposed: int = 0
    not_found: int = 0
    unknown_label: int = 0
    no_free_occurrence: int = 0
    overlapping: int = 0
    malformed: int = 0

    @property
    def aligned(self) -> int:
        return self.proposed - self.dropped

    @property
    def dropped(self) -> int:
        return self.not_found + self.unknown_label + self.no_free_occurrence + self.overlapping + self.malformed

    def stats(self) -> AlignmentStats:
        return AlignmentStats(
            mentions_found=self.proposed, mentions_aligned=self.aligned, mentions_dropped=self.dropped
        )

    def merge(self, other: AlignmentReport) -> None:
        """Add another report's counts (the spans are merged by the caller)."""
        self.proposed += other.proposed
        self.not_found += other.not_found
        self.unknown_label += other.unknown_label
        self.no_free_occurrence += other.no_free_occurrence
        self.overlapping += other.overlapping
        self.malformed += other.malformed


@dataclass(frozen=True)
class _Occurrence:
    start: int  # original offsets
    end: int
    word_bounded: bool
    exact: bool
    compound: bool = False  # joined by a hyphen to a neighbouring word ("PWS" in "PWS-IC")


class _Index:
    """Occurrences of mentions in one text, found in the normalised (and, failing that, mark-free) text."""

    def __init__(self, text: str, options: NormalizationOptions) -> None:
        self.text = text
        self._options = options
        self._views: dict[bool, NormalizedText] = {}
        self._cache: dict[str, list[_Occurrence]] = {}

    def _options_for(self, markless: bool) -> NormalizationOptions:
        return replace(self._options, strip_marks=True) if markless else self._options

    def _view(self, markless: bool) -> NormalizedText:
        if markless not in self._views:
            self._views[markless] = normalize(self.text, self._options_for(markless))
        return self._views[markless]

    def occurrences(self, mention: str) -> list[_Occurrence]:
        if mention not in self._cache:
            found = self._find(mention, markless=self._options.strip_marks)
            if not found and not self._options.strip_marks:
                found = self._find(mention, markless=True)
            self._cache[mention] = found
        return self._cache[mention]

    def _find(self, mention: str, markless: bool) -> list[_Occurrence]:
        key = normalize_key(mention, self._options_for(markless))
        if not key:
            return []
        view = self._view(markless)
        haystack = view.text
        found: list[_Occurrence] = []
        position = haystack.find(key)
        while position >= 0:
            end = position + len(key)
            start_original, end_original = view.original_span(position, end)
            bounded = not (key[0].isalnum() and position > 0 and haystack[position - 1].isalnum()) and not (
                key[-1].isalnum() and end < len(haystack) and haystack[end].isalnum()
            )
            bounded = bounded and not _inside_a_character(view, position, end)
            exact = self.text[start_original:end_original] == mention.strip()
            compound = (position > 1 and haystack[position - 1] == "-" and haystack[position - 2].isalnum()) or (
                end + 1 < len(haystack) and haystack[end] == "-" and haystack[end + 1].isalnum()
            )
            found.append(_Occurrence(start_original, end_original, bounded, exact, compound))
            position = haystack.find(key, position + 1)
        return found


def _inside_a_character(view: NormalizedText, start: int, end: int) -> bool:
    """True when the normalised slice ``[start, end)`` begins or ends inside one character of the text: inside what
    one code point folds to ("2" in "½", "s" in "ß") or before a combining mark ("a" in "à"). Such an occurrence
    does not count as standing at a word boundary, so the letter itself, where it occurs, is preferred."""
    text = view.text
    starts_inside = start > 0 and view.starts[start] == view.starts[start - 1]
    ends_inside = end < len(text) and (view.starts[end] == view.starts[end - 1] or unicodedata.combining(text[end]) > 0)
    return starts_inside or ends_inside


def _label_map(labels: Collection[str]) -> dict[str, str]:
    return {label.casefold(): label for label in labels}


def align_mentions(
    text: str,
    mentions: Sequence[ProposedMention],
    labels: Collection[str],
    *,
    mode: RepeatMode = "in_order",
    overlap_policy: OverlapPolicy = "longest",
    options: NormalizationOptions = DEFAULT_OPTIONS,
    source: str | None = None,
) -> AlignmentReport:
    """Place ``mentions`` in ``text``; see the module docstring for the policy."""
    report = AlignmentReport(proposed=len(mentions))
    label_of = _label_map(labels)
    index = _Index(text, options)
    known: list[tuple[int, ProposedMention, str]] = []
    for rank, mention in enumerate(mentions):
        label = label_of.get(mention.label.strip().casefold())
        if label is None:
            report.unknown_label += 1
        else:
            known.append((rank, mention, label))

    if mode == "all":
        placed = _place_all(index, known, report, source)
        kept, rejected = resolve_overlaps(placed, overlap_policy)
        # A mention counts as aligned when at least one of its spans survives.
        report.overlapping += len({s.rank for s in rejected} - {s.rank for s in kept})
        report.spans = kept
        return report

    # Two readings of the list: as in order of appearance (order first), and as out of order (shadowing first).
    # The one that places more mentions wins; on a tie, the in-order reading.
    best: tuple[AlignmentReport, list[Span], list[Span]] | None = None
    for shadow_first in (False, True):
        attempt = AlignmentReport(proposed=report.proposed, unknown_label=report.unknown_label)
        placed = _place_in_order(index, known, attempt, source, shadow_first)
        kept, rejected = resolve_overlaps(placed, overlap_policy)
        if best is None or len(kept) > len(best[1]):
            best = attempt, kept, rejected
        if len(kept) == len(known):
            break  # every mention placed: no reading can do better
    assert best is not None
    report, kept, rejected = best
    report.overlapping += len(rejected)
    report.spans = kept
    return report


_Known = Sequence[tuple[int, ProposedMention, str]]  # (rank, mention, declared label)


def _place_all(index: _Index, known: _Known, report: AlignmentReport, source: str | None) -> list[Span]:
    placed: list[Span] = []
    seen: set[tuple[str, str]] = set()
    for rank, mention, label in known:
        occurrences = index.occurrences(mention.text)
        if not occurrences:
            report.not_found += 1
            continue
        if (label, mention.text) in seen:
            continue  # the spans of a repeated mention are already in
        seen.add((label, mention.text))
        bounded = [o for o in occurrences if o.word_bounded] or occurrences
        placed.extend(Span(o.start, o.end, label, source=source, rank=rank) for o in bounded)
    return placed


def _preference(
    occurrence: _Occurrence,
    *,
    placed: Sequence[Span],
    hint: int | None,
    shadowed: bool,
    cursor: int,
    shadow_first: bool,
) -> tuple[int, ...]:
    """Sort key of a candidate occurrence: smaller is better (see the module docstring)."""
    o = occurrence
    overlapping = any(o.start < p.end and p.start < o.end for p in placed)
    if hint is not None:  # a position from the reply (inline markup) outranks order and shadowing
        return (overlapping, abs(o.start - hint), not o.exact, o.start)
    before = o.start < cursor
    ordered = (shadowed, before) if shadow_first else (before, shadowed)
    return (overlapping, not o.word_bounded, *ordered, o.compound, not o.exact, o.start)


def _place_in_order(
    index: _Index, known: _Known, report: AlignmentReport, source: str | None, shadow_first: bool
) -> list[Span]:
    placed: list[Span] = []
    shadowed = _shadowed_occurrences(index, [m for _, m, _ in known])
    taken: set[tuple[int, int]] = set()
    cursor = 0
    for rank, mention, label in known:
        occurrences = index.occurrences(mention.text)
        if not occurrences:
            report.not_found += 1
            continue
        free = [o for o in occurrences if (o.start, o.end) not in taken]
        if not free:
            report.no_free_occurrence += 1
            continue
        own = shadowed.get(mention.text, set())
        best = min(
            free,
            key=lambda o: _preference(
                o,
                placed=placed,
                hint=mention.hint,
                shadowed=(o.start, o.end) in own,
                cursor=cursor,
                shadow_first=shadow_first,
            ),
        )
        taken.add((best.start, best.end))
        placed.append(Span(best.start, best.end, label, source=source, rank=rank))
        cursor = best.end
    return placed


def _shadowed_occurrences(index: _Index, mentions: Sequence[ProposedMention]) -> dict[str, set[tuple[int, int]]]:
    """Occurrences of each mention that lie inside an occurrence of a longer mention of the same list."""
    distinct = {m.text for m in mentions}
    spans = {text: [(o.start, o.end) for o in index.occurrences(text)] for text in distinct}
    shadowed: dict[str, set[tuple[int, int]]] = {}
    for text, own in spans.items():
        for other, theirs in spans.items():
            if other == text:
                continue
            for start, end in own:
                if any(s <= start and end <= e and (e - s) > (end - start) for s, e in theirs):
                    shadowed.setdefault(text, set()).add((start, end))
    return shadowed
