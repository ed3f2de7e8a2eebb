"""The annotator service against the real RabbitMQ, with its LLM at a local OpenAI-compatible server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from synthner_annotator.app import build
from synthner_annotator.backends.llm import LLMAnnotatorSettings
from synthner_annotator.endpoint import EndpointSettings
from synthner_annotator.settings import AnnotatorSettings
from synthner_annotator.testing import Answer, Script, constant, lexicon_oracle, openai_compatible_server, sequence
from synthner_shared.app import BrokerApp
from synthner_shared.contracts import AnnotationFailed, DocumentAnnotated, NoteGenerated, decode_message
from synthner_shared.messaging import ANNOTATOR, FAILURES, REASON_HEADER, TRAINER, BrokerSettings
from synthner_shared.testing import BrokerProbe, publish_once, running_app, sample_note

pytestmark = pytest.mark.rabbitmq

LABELS = ["Disease", "Drug"]
TERMS = {"hypertension": "Disease", "diabetes": "Disease", "metformin": "Drug", "aspirin": "Drug"}


@asynccontextmanager
async def annotator_service(
    broker_settings: BrokerSettings, script: Script, *, external: bool = False
) -> AsyncIterator[BrokerApp]:
    """The annotator as its composition root builds it, its LLM at a local server answering with ``script``
    (declared internal unless ``external``: it runs on 127.0.0.1; the egress guard has its own tests)."""
    async with openai_compatible_server(script) as server:
        endpoint = EndpointSettings(
            base_url=server.base_url, model="gpt-test", external=external, max_attempts=1, timeout_s=10
        )
        spec = LLMAnnotatorSettings(endpoint=endpoint, malformed_retries=1)
        settings = AnnotatorSettings(labels=LABELS, annotator=spec, producer="annotator-test")
        async with running_app(await build(settings, broker_settings)) as app:
            yield app


async def test_notes_become_annotated_documents(broker_settings: BrokerSettings, broker_probe: BrokerProbe) -> None:
    notes = [sample_note(seed) for seed in range(6)]
    async with annotator_service(broker_settings, lexicon_oracle(TERMS)):
        await publish_once(broker_settings, *notes)
        received = [await broker_probe.get(broker_probe.topology.queue_name(TRAINER)) for _ in notes]
    decoded = [decode_message(m.body, (DocumentAnnotated,)) for m in received]
    documents = {d.note_id: d for d in decoded if isinstance(d, DocumentAnnotated)}
    assert set(documents) == {n.note_id for n in notes}
    for note in notes:
        document = documents[note.note_id]
        assert isinstance(document, DocumentAnnotated)
        expected = sum(note.text.lower().count(term) for term in TERMS)
        assert len(document.entities) == expected > 0
        assert all(TERMS[note.text[e.start : e.end].lower()] == e.label for e in document.entities)
        assert document.annotator.prompt is not None
        assert document.annotator.prompt.version == "v1"
        assert document.producer == "annotator-test"
        assert document.correlation_id == note.correlation_id
    assert await broker_probe.drain(broker_probe.topology.queue_name(ANNOTATOR)) == []


async def test_unparseable_replies_end_as_annotation_failed(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    note = sample_note(11)
    async with annotator_service(broker_settings, constant("I am not JSON")):
        await publish_once(broker_settings, note)
        message = await broker_probe.get(broker_probe.topology.queue_name(FAILURES))
    failed = decode_message(message.body, (AnnotationFailed,))
    assert isinstance(failed, AnnotationFailed)
    assert failed.note_id == note.note_id
    assert failed.attempts == 2
    assert "2 replies could not be parsed" in failed.reason
    assert note.text not in failed.reason
    assert await broker_probe.drain(broker_probe.topology.queue_name(TRAINER)) == []


async def test_real_note_is_refused_for_an_external_endpoint(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    note: NoteGenerated = sample_note(12).model_copy(update={"provenance": "real"})
    async with annotator_service(broker_settings, constant('{"mentions": []}'), external=True):
        await publish_once(broker_settings, note)
        message = await broker_probe.get(broker_probe.topology.queue_name(FAILURES))
    failed = decode_message(message.body, (AnnotationFailed,))
    assert isinstance(failed, AnnotationFailed)
    assert "only synthetic notes" in failed.reason


async def test_endpoint_that_stays_down_dead_letters_the_note_with_the_reason(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    note = sample_note(13)
    async with annotator_service(broker_settings, sequence(Answer.error(503))):
        await publish_once(broker_settings, note)
        dead = await broker_probe.get(broker_probe.topology.dead_letter_queue_name(ANNOTATOR))
    assert json.loads(dead.body)["note_id"] == note.note_id
    reason = str((dead.headers or {})[REASON_HEADER])
    assert "gave up after 2 retries" in reason
    assert "HTTP 503" in reason
    assert await broker_probe.drain(broker_probe.topology.queue_name(TRAINER)) == []
