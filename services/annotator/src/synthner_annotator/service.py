"""The annotator service: the handler bound to the annotator queue, with the backend's life cycle around it."""

from __future__ import annotations

import logging

from synthner_annotator.backends.base import Annotator
from synthner_annotator.factory import build_annotator
from synthner_annotator.handler import make_handler
from synthner_annotator.settings import AnnotatorSettings
from synthner_shared.contracts import NoteGenerated
from synthner_shared.messaging import ANNOTATOR, BrokerSettings, Consumer, Service, serve_health

log = logging.getLogger(__name__)


def note_key(note: NoteGenerated) -> str:
    """Notes are de-duplicated on their content hash, so a re-published copy is not annotated twice."""
    return note.note_id


def build_service(settings: AnnotatorSettings, broker: BrokerSettings, annotator: Annotator) -> Service:
    handler = make_handler(annotator, settings.labels, settings.producer, settings.max_note_chars)
    consumer = Consumer(ANNOTATOR, (NoteGenerated,), handler, idempotency_key=note_key)
    return Service(broker, settings.producer, [consumer])


async def run(settings: AnnotatorSettings, broker: BrokerSettings) -> bool:
    """Run until SIGTERM; returns True when in-flight work finished within the grace period."""
    annotator = build_annotator(settings.annotator, settings.labels)
    try:
        service = build_service(settings, broker, annotator)
        health = None
        if settings.health_port is not None:
            health = await serve_health(service.health, settings.health_host, settings.health_port)
        try:
            return await service.run()
        finally:
            if health is not None:
                health.close()
    finally:
        log.info("usage: %s", annotator.usage())
        await annotator.aclose()
