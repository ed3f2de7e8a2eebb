"""The consumer's handler: ``NoteGenerated`` in, ``DocumentAnnotated`` (or ``AnnotationFailed``) out.

Outcomes:

- annotated: ``DocumentAnnotated`` (the schema re-checks the span invariants);
- a permanent failure (egress refused, replies unparseable after retries, note too large, request refused by the
  endpoint): ``AnnotationFailed`` with the reason — failures are data — and the note is acknowledged;
- a transient failure (endpoint unavailable after its retries): :class:`RetryableError`, so the broker retries the
  note after its back-off and dead-letters it with the reason when retries run out;
- a span list that breaks the invariants (a bug): :class:`PoisonMessageError`, dead-lettered with the reason;
  a broken document is never published.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from pydantic import ValidationError

from synthner_annotator.backends.base import Annotation, AnnotationRequest, Annotator
from synthner_annotator.errors import NoteRejected, PermanentAnnotationError, TransientAnnotationError
from synthner_shared.contracts import (
    AnnotationFailed,
    DocumentAnnotated,
    EntitySpan,
    Envelope,
    NoteGenerated,
    describe_validation_error,
)
from synthner_shared.messaging import PoisonMessageError, RetryableError
from synthner_shared.messaging.consumer import bounded_reason

log = logging.getLogger(__name__)
USAGE_LOG_EVERY = 100


def to_document(note: NoteGenerated, annotation: Annotation, labels: Sequence[str], producer: str) -> DocumentAnnotated:
    return DocumentAnnotated(
        correlation_id=note.correlation_id,
        producer=producer,
        note_id=note.note_id,
        text=note.text,
        language=note.language,
        provenance=note.provenance,
        labels=list(labels),
        entities=[
            EntitySpan(start=s.start, end=s.end, label=s.label, score=s.score, source=s.source)
            for s in annotation.spans
        ],
        annotator=annotation.record,
        alignment=annotation.report.stats(),
        agreement=annotation.agreement,
    )


def make_handler(
    annotator: Annotator, labels: Sequence[str], producer: str, max_note_chars: int
) -> Callable[[NoteGenerated], Awaitable[Sequence[Envelope]]]:
    handled = 0

    async def handle(note: NoteGenerated) -> Sequence[Envelope]:
        nonlocal handled
        handled += 1
        if handled % USAGE_LOG_EVERY == 0:
            log.info("%d notes handled; usage per endpoint: %s", handled, annotator.usage())
        try:
            if len(note.text) > max_note_chars:
                raise NoteRejected(f"note has {len(note.text)} characters, above the limit of {max_note_chars}")
            annotation = await annotator.annotate(AnnotationRequest.from_note(note))
        except TransientAnnotationError as exc:
            raise RetryableError(exc.reason) from None
        except PermanentAnnotationError as exc:
            log.warning("note %s not annotated: %s", note.note_id, exc.reason)
            failed = AnnotationFailed(
                correlation_id=note.correlation_id,
                producer=producer,
                note_id=note.note_id,
                annotator=annotator.record(),
                reason=bounded_reason(exc.reason, limit=2000),  # AnnotationFailed.reason's max_length
                attempts=max(1, exc.attempts),
            )
            return [failed]
        try:
            document = to_document(note, annotation, labels, producer)
        except ValidationError as exc:
            raise PoisonMessageError(
                f"annotation broke the document schema: {describe_validation_error(exc)}"
            ) from None
        report = annotation.report
        log.info(
            "note %s: %d spans, %d of %d mentions aligned",
            note.note_id,
            len(document.entities),
            report.aligned,
            report.proposed,
        )
        return [document]

    return handle
