"""The port every annotator backend implements, and what goes in and out of it.

Backends: ``llm`` (OpenAI-compatible chat), ``lexicon`` (gazetteer), ``encoder`` (a Hugging Face token-classification
folder, the Vakili et al. method; imports torch lazily), ``ensemble`` (weighted vote of others). A new backend
implements :class:`Annotator` in its own module and adds its settings class (with a ``kind`` literal) to the union in
:mod:`synthner_annotator.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from synthner_annotator.alignment import AlignmentReport
from synthner_annotator.spans import Span
from synthner_shared.contracts import AnnotatorRecord, LeakStatus, Mention, NoteGenerated, Provenance


@dataclass(frozen=True)
class AnnotationRequest:
    """A text to annotate, with what the egress guard and the lexicon need to know about it."""

    note_id: str
    text: str
    language: str
    provenance: Provenance
    leak_status: LeakStatus
    requested_entities: tuple[Mention, ...] = ()

    @classmethod
    def from_note(cls, note: NoteGenerated) -> AnnotationRequest:
        return cls(
            note_id=note.note_id,
            text=note.text,
            language=note.language,
            provenance=note.provenance,
            leak_status=note.leak_check.status,
            requested_entities=tuple(note.requested_entities),
        )


@dataclass
class Annotation:
    """Sorted, non-overlapping spans with the counts behind them. ``members``: each ensemble member's own spans."""

    spans: list[Span]
    report: AlignmentReport
    record: AnnotatorRecord
    agreement: float | None = None
    attempts: int = 1
    members: dict[str, list[Span]] = field(default_factory=dict)


class Annotator(Protocol):
    """An annotator backend. ``annotate`` raises only :class:`~synthner_annotator.errors.AnnotatorError`s."""

    @property
    def name(self) -> str: ...

    def record(self) -> AnnotatorRecord: ...

    def usage(self) -> dict[str, dict[str, float]]:
        """Counters per endpoint (requests, tokens, cost, ...), empty for backends without one."""
        ...

    async def annotate(self, request: AnnotationRequest) -> Annotation: ...

    async def aclose(self) -> None: ...
