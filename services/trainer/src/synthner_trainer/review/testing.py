"""Support for tests and the review benchmark: documents as annotators' messages; ``served`` runs the review app on a
real port of 127.0.0.1 (:func:`synthner_shared.testing_browser.served_app`)."""

from __future__ import annotations

from collections.abc import Sequence

from synthner_shared.contracts import AlignmentStats, AnnotatorRecord, DocumentAnnotated, EntitySpan, PromptRef
from synthner_shared.contracts.envelope import content_id
from synthner_shared.documents import Document
from synthner_shared.testing_browser import served_app as served

__all__ = ["annotated", "served"]


def annotated(
    document: Document,
    labels: Sequence[str],
    backend: str = "lexicon",
    model: str | None = None,
    prompt: tuple[str, str] | None = None,
) -> DocumentAnnotated:
    """``document`` as the message an annotator would send (note id: the text's hash; scores kept)."""
    entities = [
        EntitySpan(start=e.start, end=e.end, label=e.label, score=(e.model_extra or {}).get("score"))
        for e in document.entities
    ]
    return DocumentAnnotated(
        correlation_id="review-tests",
        producer="tests",
        note_id=content_id(document.text),
        text=document.text,
        language="en",
        provenance="synthetic",
        labels=list(labels),
        entities=entities,
        annotator=AnnotatorRecord(
            backend=backend, model=model, prompt=PromptRef(name=prompt[0], version=prompt[1]) if prompt else None
        ),
        alignment=AlignmentStats(mentions_found=len(entities), mentions_aligned=len(entities), mentions_dropped=0),
    )
