"""Hostile messages on every work queue, against the real RabbitMQ and each service's own consumer.

Malformed, truncated, oversized, wrong-version and unknown-type bodies are published to the queue of every consuming
role (generator, job tracker, annotator, trainer, a NER API replica's model events). Each must end in the role's
dead-letter queue with the reason in its header, no log line may quote the bodies, and the consumer must go on: a
valid message published after the bad ones is processed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from synthner_annotator.backends.lexicon import LexiconAnnotator, LexiconSettings
from synthner_annotator.service import build_service
from synthner_annotator.settings import AnnotatorSettings
from synthner_generator.service import build_generator, generator_service, tracker_service
from synthner_generator.testing import local_llm_server, sample_job, settings_for
from synthner_generator.tracker import JobStore
from synthner_ner_api.events import model_event_consumer
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.testing import load_lexicon_model, model_published, write_model
from synthner_shared.contracts import DocumentAnnotated, Envelope, GenerationProgress, decode_message
from synthner_shared.messaging import (
    ANNOTATOR,
    GENERATOR,
    JOB_PROGRESS,
    NER_API,
    QUEUE_HEADER,
    REASON_HEADER,
    TRAINER,
    BrokerSettings,
    QueueRole,
    Service,
)
from synthner_shared.testing import (
    BrokerProbe,
    captured_service_logs,
    publish_once,
    running_service,
    sample_annotated,
    sample_note,
)
from synthner_trainer.service import TrainerService
from synthner_trainer.settings import TrainerSettings

pytestmark = pytest.mark.rabbitmq

MAX_MESSAGE_BYTES = 64 * 1024
CANARY = "ZQ-poison-canary-5117"
INSTANCE = "replica-poison"


def poison_bodies(valid: Envelope) -> list[tuple[str, bytes, str]]:
    """(what, body, part of the expected dead-letter reason) for each kind of hostile message."""
    raw = json.loads(valid.model_dump_json())
    encoded = json.dumps({**raw, "canary": CANARY}).encode()
    return [
        ("malformed", b"\xff\xfe{" + CANARY.encode() + b" not json", "body is not JSON"),
        ("truncated", encoded[: len(encoded) // 2], "body is not JSON"),
        (
            "oversized",
            json.dumps({**raw, "padding": CANARY * (MAX_MESSAGE_BYTES // len(CANARY) + 1)}).encode(),
            f"over the limit of {MAX_MESSAGE_BYTES} bytes",
        ),
        ("wrong version", json.dumps({**raw, "schema_version": 99}).encode(), "schema_version 99 is not supported"),
        ("unknown type", json.dumps({**raw, "type": f"X{CANARY}".replace("-", "")}).encode(), "unknown message type"),
        ("invalid field", json.dumps({**raw, "message_id": CANARY}).encode(), "message_id: Input should be a valid"),
    ]


@dataclass
class Role:
    """A consuming role: its queue, a valid message, and a running service that reports when it processed it."""

    role: QueueRole
    valid: Callable[[Path], Envelope]
    run: Callable[[BrokerSettings, BrokerProbe, Path], AbstractAsyncContextManager[Callable[[], Awaitable[object]]]]
    instance: str | None = None


@asynccontextmanager
async def generator_running(
    broker: BrokerSettings, probe: BrokerProbe, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[object]]]:
    async with local_llm_server() as server:
        settings = settings_for(server.url, tmp_path)
        async with (
            build_generator(settings) as generator,
            running_service(generator_service(broker, settings, generator)),
        ):

            async def processed() -> None:
                await probe.get(probe.topology.queue_name(ANNOTATOR))  # the valid job's note

            yield processed


class WatchedJobs(JobStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.recorded = asyncio.Event()

    def record(self, event: GenerationProgress) -> None:
        super().record(event)
        self.recorded.set()


@asynccontextmanager
async def tracker_running(
    broker: BrokerSettings, probe: BrokerProbe, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[object]]]:
    settings = settings_for("http://127.0.0.1:9", tmp_path)
    store = WatchedJobs(settings.tracker_db)
    try:
        async with running_service(tracker_service(broker, settings, store)):
            yield store.recorded.wait
    finally:
        store.close()


@asynccontextmanager
async def annotator_running(
    broker: BrokerSettings, probe: BrokerProbe, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[object]]]:
    spec = LexiconSettings(terms={"Disease": ["hypertension", "diabetes"]})
    settings = AnnotatorSettings(labels=["Disease"], annotator=spec, producer="annotator-poison")
    annotator = LexiconAnnotator(spec, settings.labels)
    try:
        async with running_service(build_service(settings, broker, annotator)):

            async def processed() -> None:
                document = decode_message((await probe.get(probe.topology.queue_name(TRAINER))).body)
                assert isinstance(document, DocumentAnnotated)

            yield processed
    finally:
        await annotator.aclose()


class WatchedTrainer(TrainerService):
    stored: asyncio.Event

    async def store_document(self, message: DocumentAnnotated) -> None:
        await super().store_document(message)
        self.stored.set()


@asynccontextmanager
async def trainer_running(
    broker: BrokerSettings, probe: BrokerProbe, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[object]]]:
    trainer = WatchedTrainer(TrainerSettings(data_dir=tmp_path / "trainer"), broker)
    trainer.stored = asyncio.Event()
    trainer.start()
    try:
        async with running_service(trainer.service):
            yield trainer.stored.wait
    finally:
        trainer.close()


@asynccontextmanager
async def ner_api_running(
    broker: BrokerSettings, probe: BrokerProbe, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[object]]]:
    store = tmp_path / "models"
    write_model(store, "v1", "Disease", ["asthma"])
    registry = ModelRegistry(load_lexicon_model, store=store)
    await registry.load()
    write_model(store, "v2", "Disease", ["asthma", "diabetes"])
    async with running_service(Service(broker, INSTANCE, [model_event_consumer(registry, INSTANCE)])):

        async def processed() -> None:
            await registry.wait_for_version("v2")

        yield processed


ROLES = {
    "generator": Role(GENERATOR, lambda _: sample_job(count=1), generator_running),
    "tracker": Role(
        JOB_PROGRESS,
        lambda _: GenerationProgress(
            correlation_id="job-1", producer="tests", job_id="job-1", event="accepted", requested=1
        ),
        tracker_running,
    ),
    "annotator": Role(ANNOTATOR, lambda _: sample_note(3), annotator_running),
    "trainer": Role(TRAINER, lambda _: sample_annotated(seed=3, target_chars=300, spans=3), trainer_running),
    "ner-api": Role(NER_API, lambda tmp: model_published("v2", tmp / "models"), ner_api_running, INSTANCE),
}


@pytest.mark.parametrize("name", list(ROLES))
async def test_hostile_messages_are_dead_lettered_with_a_reason_and_the_consumer_goes_on(
    name: str, broker_settings: BrokerSettings, broker_probe: BrokerProbe, tmp_path: Path
) -> None:
    role = ROLES[name]
    broker = broker_settings.model_copy(update={"max_message_bytes": MAX_MESSAGE_BYTES})
    valid = role.valid(tmp_path)
    bodies = poison_bodies(valid)
    dlq = broker_probe.topology.dead_letter_queue_name(role.role)
    try:
        with captured_service_logs() as logs:
            async with role.run(broker, broker_probe, tmp_path) as processed:
                for _, body, _ in bodies:
                    await broker_probe.publish_raw(body, role.role.routing_keys[0], content_type="application/json")
                await publish_once(broker, valid)
                await asyncio.wait_for(processed(), timeout=30)
                dead = [await broker_probe.get(dlq) for _ in bodies]
        assert await broker_probe.drain(dlq) == []
    finally:
        if role.instance is not None:  # the per-replica queues are not part of the shared topology
            instances = {role.role.name: [role.instance]}
            await broker_probe.topology.delete(await broker_probe.connection.channel(), instances=instances)
    reasons = {str((m.headers or {})[REASON_HEADER]): m for m in dead}
    for what, body, expected in bodies:
        matching = [m for reason, m in reasons.items() if expected in reason and m.body == body]
        assert matching, f"{what}: no dead letter with {expected!r} among {sorted(reasons)}"
    queue = broker_probe.topology.queue_name(role.role, role.instance)
    assert {str((m.headers or {})[QUEUE_HEADER]) for m in dead} == {queue}
    assert all(CANARY not in reason for reason in reasons), "a dead-letter reason quotes the body"
    assert logs.containing(CANARY) == [], "a log line quotes a message body"
