"""Test support: sample messages (synthetic text only, never real notes) and helpers to run services in a test."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from synthner_shared.app import BrokerApp
from synthner_shared.contracts import (
    AlignmentStats,
    AnnotatorRecord,
    DocumentAnnotated,
    EntitySpan,
    Envelope,
    GenerationRecord,
    LeakCheckResult,
    NoteGenerated,
    PromptRef,
    content_id,
)
from synthner_shared.logs import configure_logging
from synthner_shared.messaging import ANNOTATOR, Broker, BrokerSettings, Consumer, Service, Topology

_WORDS = [
    "patient",
    "presents",
    "with",
    "chest",
    "pain",
    "dyspnoea",
    "fever",
    "history",
    "of",
    "hypertension",
    "diabetes",
    "treated",
    "with",
    "metformin",
    "aspirin",
    "lisinopril",
    "follow-up",
    "in",
    "clinic",
    "discharged",
    "home",
    "stable",
    "condition",
    "examination",
    "unremarkable",
]
_DISEASES = ("hypertension", "type 2 diabetes", "asthma", "atrial fibrillation", "pneumonia", "migraine")


def sample_note(seed: int = 0, words: int = 60, correlation_id: str = "job-test") -> NoteGenerated:
    """A synthetic note of about ``words`` words."""
    rng = random.Random(seed)  # noqa: S311 - reproducible sample text, not security
    text = " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."
    return NoteGenerated(
        correlation_id=correlation_id,
        producer="tests",
        note_id=content_id(text),
        text=text,
        language="en",
        note_type="discharge_summary",
        provenance="synthetic",
        generation=GenerationRecord(
            backend="test", model="none", prompt=PromptRef(name="discharge_summary", version="v1"), seed=seed
        ),
        leak_check=LeakCheckResult(status="passed", detectors=["test"]),
    )


def sample_annotated(seed: int = 0, target_chars: int = 2_000, spans: int = 20) -> DocumentAnnotated:
    """A document of about ``target_chars`` characters with exactly ``spans`` Disease spans (benchmark payload)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible sample text, not security
    pieces: list[str] = []
    entities: list[EntitySpan] = []
    length = 0
    filler_per_span = max(1, (target_chars // spans) // 8)
    for _ in range(spans):
        filler = " ".join(rng.choice(_WORDS) for _ in range(filler_per_span)) + " "
        pieces.append(filler)
        length += len(filler)
        disease = rng.choice(_DISEASES)
        entities.append(EntitySpan(start=length, end=length + len(disease), label="Disease", source="lexicon"))
        pieces.append(disease)
        length += len(disease)
        pieces.append(". ")
        length += 2
    text = "".join(pieces)
    return DocumentAnnotated(
        correlation_id="job-bench",
        producer="tests",
        note_id=content_id(text),
        text=text,
        language="en",
        provenance="synthetic",
        labels=["Disease"],
        entities=entities,
        annotator=AnnotatorRecord(backend="lexicon"),
        alignment=AlignmentStats(mentions_found=spans, mentions_aligned=spans, mentions_dropped=0),
    )


def annotate_without_entities(note: NoteGenerated, producer: str = "tests") -> DocumentAnnotated:
    """The trivial annotation of a note (no entities), for tests of the message flow."""
    return DocumentAnnotated(
        correlation_id=note.correlation_id,
        producer=producer,
        note_id=note.note_id,
        text=note.text,
        language=note.language,
        provenance=note.provenance,
        labels=["Disease"],
        entities=[],
        annotator=AnnotatorRecord(backend="none"),
        alignment=AlignmentStats(mentions_found=0, mentions_aligned=0, mentions_dropped=0),
    )


@asynccontextmanager
async def _running(
    run: Coroutine[Any, Any, object],
    wait_started: Callable[[], Coroutine[Any, Any, None]],
    request_stop: Callable[[], None],
    start_timeout_s: float,
) -> AsyncIterator[None]:
    """Run ``run`` as a task until the block ends: wait until it has started (or failed: its error is raised), then
    ask it to stop and wait for it."""
    task = asyncio.create_task(run)
    started = asyncio.create_task(wait_started())
    done, _ = await asyncio.wait({task, started}, timeout=start_timeout_s, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    if started not in done:
        started.cancel()
        task.cancel()
        raise TimeoutError(f"service did not start within {start_timeout_s:g}s")
    try:
        yield
    finally:
        request_stop()
        await asyncio.wait_for(task, timeout=start_timeout_s)


@asynccontextmanager
async def running_service(service: Service, start_timeout_s: float = 30.0) -> AsyncIterator[Service]:
    """Run a service in the current event loop for the block's duration, without signal handlers."""
    async with _running(
        service.run(install_signal_handlers=False), service.wait_started, service.request_stop, start_timeout_s
    ):
        yield service


@asynccontextmanager
async def running_app(app: BrokerApp, start_timeout_s: float = 30.0) -> AsyncIterator[BrokerApp]:
    """Run a service as its composition root built it, for the block's duration; stop it, then close it."""
    try:
        async with _running(app.run(), app.wait_started, app.request_stop, start_timeout_s):
            yield app
    finally:
        await app.aclose()


async def publish_once(settings: BrokerSettings, *messages: Envelope) -> None:
    """Connect, publish the messages with confirms, disconnect."""
    async with Broker(settings, "tests") as broker:
        await broker.publisher.publish_many(messages)


def echo_annotator(calls: list[NoteGenerated]) -> Consumer[NoteGenerated]:
    """An annotator-role consumer that records each note it handles and annotates it without entities."""

    async def handle(note: NoteGenerated) -> Sequence[Envelope]:
        calls.append(note)
        return [annotate_without_entities(note)]

    return Consumer(ANNOTATOR, (NoteGenerated,), handle)


class BrokerProbe:
    """A plain aio-pika connection for the test side: publish raw bodies, read queues, all with deadlines."""

    def __init__(self, connection: AbstractRobustConnection, topology: Topology) -> None:
        self.connection = connection
        self.topology = topology

    async def _channel(self, **options: bool) -> AbstractChannel:
        async with asyncio.timeout(60):  # the robust connection may be reconnecting after a broker restart
            await self.connection.ready()
        return await self.connection.channel(**options)

    async def get(self, queue_name: str, timeout_s: float = 20.0) -> AbstractIncomingMessage:
        """The next message of a queue (acked), waiting at most ``timeout_s``."""
        channel = await self._channel()
        await channel.set_qos(prefetch_count=1)
        try:
            queue = await channel.get_queue(queue_name, ensure=False)
            async with asyncio.timeout(timeout_s), queue.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    return message
            raise AssertionError("unreachable: the iterator ends only by timeout")
        finally:
            await channel.close()

    async def drain(self, queue_name: str) -> list[AbstractIncomingMessage]:
        """Every message now ready in a queue (acked)."""
        channel = await self._channel()
        try:
            queue = await channel.get_queue(queue_name, ensure=False)
            messages = []
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                messages.append(message)
            return messages
        finally:
            await channel.close()

    async def publish_raw(self, body: bytes, routing_key: str, **properties: object) -> None:
        channel = await self._channel(publisher_confirms=True, on_return_raises=True)
        try:
            exchange = await channel.get_exchange(self.topology.exchange)
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties),  # type: ignore[arg-type]
                routing_key,
            )
        finally:
            await channel.close()


class CapturedLogs(logging.Handler):
    """Every record formatted as the services format it, kept for assertions (see :func:`captured_service_logs`)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        line = self._formatter.format(record)  # includes any traceback, which is part of the log line too
        self.lines.append(line)

    def containing(self, needle: str) -> list[str]:
        return [line for line in self.lines if needle in line]


@contextmanager
def captured_service_logs(level: str = "DEBUG") -> Iterator[CapturedLogs]:
    """The services' own logging set-up (:func:`~synthner_shared.logs.configure_logging`) at ``level``, with every
    record also captured; the previous logging configuration is restored afterwards."""
    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    saved = [(logger, logger.level, list(logger.handlers)) for logger in loggers]
    capture = CapturedLogs()
    configure_logging(level)
    root.addHandler(capture)
    try:
        yield capture
    finally:
        for logger, saved_level, handlers in saved:
            logger.setLevel(saved_level)
            logger.handlers[:] = handlers
