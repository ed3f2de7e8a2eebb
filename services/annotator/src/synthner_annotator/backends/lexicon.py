"""The lexicon annotator: gazetteer matching per label, plus the entities the generator seeded into the note's prompt
(label-conditioned generation, the Tang et al. method).

Terms and text are compared in normalised form (whitespace runs, Unicode forms, quote/dash variants always; case and
diacritics as configured), except that acronyms (terms without lower-case letters) keep their case by default.
Matches must start and end on word boundaries; the scan is leftmost-longest, and matches of the seeded entities
compete with gazetteer matches under the ``longest`` overlap policy. A term listed under two labels keeps the first
label in the order of the declared label set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from synthner_annotator.alignment import AlignmentReport
from synthner_annotator.backends.base import Annotation, AnnotationRequest
from synthner_annotator.errors import ConfigurationError
from synthner_annotator.normalization import NormalizationOptions, normalize, normalize_key
from synthner_annotator.spans import Span, resolve_overlaps
from synthner_shared.contracts import AnnotatorRecord, Mention
from synthner_shared.documents import read_documents


class LexiconSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["lexicon"] = "lexicon"
    name: str = Field(default="lexicon", min_length=1, max_length=60)
    terms: dict[str, list[str]] = Field(default_factory=dict, description="Label -> terms.")
    term_files: dict[str, list[Path]] = Field(
        default_factory=dict, description="Label -> text files with one term per line ('#' starts a comment)."
    )
    document_files: list[Path] = Field(
        default_factory=list, description="Annotated JSONL documents whose entity texts become terms of their label."
    )
    case_sensitive: bool = False
    acronyms_case_sensitive: bool = Field(
        default=True,
        description="Terms written without lower-case letters (acronyms: 'WAS', 'DM', 'BRCA1') match only as written, "
        "even when case is otherwise ignored, so the disease 'WAS' does not match the word 'was'.",
    )
    diacritics_sensitive: bool = True
    use_requested_entities: bool = Field(default=True, description="Also match the note's seeded entities.")
    min_term_chars: int = Field(default=2, ge=1, description="Shorter terms are ignored (they match everywhere).")


def _read_term_file(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _is_acronym(term: str) -> bool:
    """Written without lower-case letters, with at least one upper-case one ('WAS', 'BRCA1', 'X-ALD')."""
    return any(c.isupper() for c in term) and not any(c.islower() for c in term)


class _Gazetteer:
    """Normalised term -> label, compiled into one leftmost-longest regular expression."""

    def __init__(self, entries: Iterable[tuple[str, str]], options: NormalizationOptions, min_chars: int) -> None:
        self.by_key: dict[str, str] = {}
        for label, term in entries:
            key = normalize_key(term, options)
            if len(key) >= min_chars:
                self.by_key.setdefault(key, label)
        keys = sorted(self.by_key, key=len, reverse=True)
        alternatives = "|".join(re.escape(key) for key in keys)
        self.pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)") if keys else None

    def matches(self, normalized: str) -> Iterable[tuple[int, int, str]]:
        if self.pattern is None:
            return
        for match in self.pattern.finditer(normalized):
            yield match.start(), match.end(), self.by_key[match.group()]


class LexiconAnnotator:
    def __init__(self, settings: LexiconSettings, labels: Sequence[str]) -> None:
        self.settings = settings
        self.labels = list(labels)
        self.options = NormalizationOptions(
            casefold=not settings.case_sensitive, strip_marks=not settings.diacritics_sensitive
        )
        entries = self._entries()
        order = {label: i for i, label in enumerate(self.labels)}
        entries.sort(key=lambda entry: order[entry[0]])
        self.exact_case_options = replace(self.options, casefold=False)
        self.gazetteer, self.acronyms = self._split(entries, settings.min_term_chars)

    def _entries(self) -> list[tuple[str, str]]:
        entries: list[tuple[str, str]] = []
        for label, terms in self.settings.terms.items():
            entries += [(label, term) for term in terms]
        for label, paths in self.settings.term_files.items():
            for path in paths:
                entries += [(label, term) for term in _read_term_file(path)]
        for path in self.settings.document_files:
            for document in read_documents(path):
                entries += [(e.label, document.text[e.start : e.end]) for e in document.entities]
        outside = {label for label, _ in entries} - set(self.labels)
        if outside:
            raise ConfigurationError(f"lexicon terms with labels outside the label set: {sorted(outside)}")
        return entries

    @property
    def name(self) -> str:
        return self.settings.name

    def record(self) -> AnnotatorRecord:
        terms = len(self.gazetteer.by_key) + len(self.acronyms.by_key)
        return AnnotatorRecord(backend="lexicon", model=f"{terms} terms")

    def usage(self) -> dict[str, dict[str, float]]:
        return {}

    async def aclose(self) -> None:
        return None

    def _split(self, entries: list[tuple[str, str]], min_chars: int) -> tuple[_Gazetteer, _Gazetteer]:
        """Entries as (case-folded gazetteer, exact-case gazetteer of the acronyms) under the configured options."""
        acronyms: list[tuple[str, str]] = []
        if self.options.casefold and self.settings.acronyms_case_sensitive:
            acronyms = [entry for entry in entries if _is_acronym(entry[1])]
            entries = [entry for entry in entries if not _is_acronym(entry[1])]
        return _Gazetteer(entries, self.options, min_chars), _Gazetteer(acronyms, self.exact_case_options, min_chars)

    def _requested(self, mentions: Sequence[Mention]) -> tuple[_Gazetteer, _Gazetteer] | None:
        known = set(self.labels)
        entries = [(m.label, m.text) for m in mentions if m.label in known]
        return self._split(entries, 1) if entries and self.settings.use_requested_entities else None

    async def annotate(self, request: AnnotationRequest) -> Annotation:
        return self.annotate_text(request.text, request.requested_entities)

    def annotate_text(self, text: str, requested: Sequence[Mention] = ()) -> Annotation:
        """Synchronous core (pure CPU, no I/O)."""
        views = {False: normalize(text, self.options)}
        candidates: list[Span] = []
        ranked = [g for g in (self._requested(requested), (self.gazetteer, self.acronyms)) if g is not None]
        for rank, pair in enumerate(ranked):
            for exact_case, gazetteer in zip((False, True), pair, strict=True):
                if gazetteer.pattern is None:
                    continue
                if exact_case not in views:
                    views[exact_case] = normalize(text, self.exact_case_options)
                view = views[exact_case]
                for start, end, label in gazetteer.matches(view.text):
                    original_start, original_end = view.original_span(start, end)
                    candidates.append(Span(original_start, original_end, label, source=self.name, rank=rank))
        kept, rejected = resolve_overlaps(candidates, "longest")
        report = AlignmentReport(spans=kept, proposed=len(candidates), overlapping=len(rejected))
        return Annotation(spans=kept, report=report, record=self.record())
