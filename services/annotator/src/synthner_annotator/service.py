"""The annotator service: the handler bound to the annotator queue (:mod:`synthner_annotator.app` builds it)."""

from __future__ import annotations

from synthner_annotator.backends.base import Annotator
from synthner_annotator.handler import make_handler
from synthner_annotator.settings import AnnotatorSettings
from synthner_shared.contracts import NoteGenerated
from synthner_shared.messaging import ANNOTATOR, BrokerSettings, Consumer, Service


def note_key(note: NoteGenerated) -> str:
    """Notes are de-duplicated on their content hash, so a re-published copy is not annotated twice."""
    return note.note_id


def build_service(settings: AnnotatorSettings, broker: BrokerSettings, annotator: Annotator) -> Service:
    handler = make_handler(annotator, settings.labels, settings.producer, settings.max_note_chars)
    consumer = Consumer(ANNOTATOR, (NoteGenerated,), handler, idempotency_key=note_key)
    return Service(broker, settings.producer, [consumer])
