"""Offline annotation of document files, for the ``synthner annotate`` command (scoring lives in the command, with
``synthner_shared.evaluation``, so the service image does not need seqeval).

Documents of a JSONL file carry no provenance: they are treated as ``real`` (so the egress guard keeps them from
external endpoints) unless the caller declares them synthetic. Declaring them synthetic marks nothing as checked: each
document's leak status is what the leak gate finds when it runs on it here (``unchecked`` without a reference), and
the egress guard runs the gate once more before an external call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from synthner_annotator.backends.base import Annotation, AnnotationRequest, Annotator
from synthner_annotator.errors import AnnotatorError
from synthner_annotator.spans import Span
from synthner_shared.contracts import Provenance, content_id
from synthner_shared.documents import Document, DocumentEntity
from synthner_shared.leakgate import LeakGate


@dataclass(frozen=True)
class Outcome:
    """One document's annotation, or why it failed (a reason without text)."""

    document: Document
    annotation: Annotation | None
    failure: str | None = None


def request_for(document: Document, language: str, provenance: Provenance, gate: LeakGate) -> AnnotationRequest:
    """The request for one document; a synthetic one's leak status is the gate's verdict on it, never assumed."""
    return AnnotationRequest(
        note_id=content_id(document.text),
        text=document.text,
        language=language,
        provenance=provenance,
        leak_status=gate.check(document.text).status if provenance == "synthetic" else "unchecked",
    )


async def annotate_documents(
    annotator: Annotator,
    documents: Iterable[Document],
    *,
    language: str,
    provenance: Provenance,
    concurrency: int,
    gate: LeakGate | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Annotate documents with at most ``concurrency`` in flight; results in input order. ``gate`` sets the leak
    status of synthetic documents (default: no reference, so ``unchecked``). ``on_done`` hears of each outcome as it
    finishes (a progress bar)."""
    slots = asyncio.Semaphore(concurrency)
    gate = gate or LeakGate(None)

    async def one(document: Document) -> Outcome:
        async with slots:
            try:
                outcome = Outcome(document, await annotator.annotate(request_for(document, language, provenance, gate)))
            except AnnotatorError as exc:
                outcome = Outcome(document, None, f"{type(exc).__name__}: {exc.reason}")
            if on_done is not None:
                on_done(outcome)
            return outcome

    return list(await asyncio.gather(*(one(document) for document in documents)))


def with_spans(document: Document, spans: Sequence[Span]) -> Document:
    """The document with its entities replaced by ``spans`` (score and source kept as extra keys when set)."""
    entities = []
    for span in spans:
        extra = {k: v for k, v in (("score", span.score), ("source", span.source)) if v is not None}
        entities.append(DocumentEntity(start=span.start, end=span.end, label=span.label, **extra))
    return document.model_copy(update={"entities": entities})


def predictions(outcomes: Sequence[Outcome], member: str | None = None) -> list[Document]:
    """Predicted documents (a failed document predicts no entities); ``member``: one ensemble member's spans."""
    documents = []
    for outcome in outcomes:
        spans: Sequence[Span] = []
        if outcome.annotation is not None:
            spans = outcome.annotation.members.get(member, []) if member else outcome.annotation.spans
        documents.append(with_spans(outcome.document, spans))
    return documents
