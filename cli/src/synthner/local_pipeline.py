"""The four stages on one machine, each built by its service's composition root (``synthner_<svc>.app.build``).

Three transports over the same services:

- ``in-process``: the generator's, annotator's and trainer's consumers' handlers chained in memory — each output
  message is routed by its type to the handler that consumes it in production, until nothing is left to route;
- ``broker``: each stage run as its composition root built it (its own connection and quorum queue) in a fresh
  namespace on a RabbitMQ, plus an observer queue that receives a copy of every message
  so the run can be counted and reported; the namespace is deleted at the end;
- ``processes``: the same over RabbitMQ, but each stage is a separate OS process started from its production entry
  point (``python -m synthner_generator`` ...) by :mod:`synthner.supervisor`; the observer stays in the demo.

Either way the outputs are the messages the stages produced; :class:`PipelineRun` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

import aio_pika

from synthner_shared.app import BrokerApp
from synthner_shared.contracts import (
    AnnotationFailed,
    DocumentAnnotated,
    Envelope,
    GenerationFailed,
    GenerationProgress,
    GenerationRequested,
    ModelPublished,
    NoteGenerated,
    NoteQuarantined,
    TrainingRequested,
)
from synthner_shared.messaging import BrokerSettings, Consumer, QueueRole, Service, Topology

log = logging.getLogger(__name__)

Transport = Literal["in-process", "broker", "processes"]
Message = TypeVar("Message", bound=Envelope)
Handler = Callable[[Envelope], Awaitable[Sequence[Envelope]]]

OBSERVED: tuple[type[Envelope], ...] = (
    GenerationRequested,
    GenerationProgress,
    GenerationFailed,
    NoteGenerated,
    NoteQuarantined,
    DocumentAnnotated,
    AnnotationFailed,
    TrainingRequested,
    ModelPublished,
)


@dataclass
class StageCounts:
    """What each stage did, from the messages it produced."""

    requested: int = 0
    generated: int = 0
    rejected: int = 0
    duplicates: int = 0
    quarantined: int = 0
    generation_failed: int = 0
    annotated: int = 0
    annotation_failed: int = 0
    entities: int = 0
    mentions_found: int = 0
    mentions_aligned: int = 0
    mentions_dropped: int = 0
    agreement: float | None = None


@dataclass
class PipelineRun:
    """Every message the run produced, in order."""

    messages: list[Envelope] = field(default_factory=list)

    def of(self, kind: type[Message]) -> list[Message]:
        return [m for m in self.messages if isinstance(m, kind)]

    def counts(self) -> StageCounts:
        counts = StageCounts()
        for progress in self.of(GenerationProgress):
            if progress.event == "part":
                counts.requested += progress.requested
                counts.generated += progress.generated
                counts.rejected += progress.rejected
                counts.duplicates += progress.duplicates
                counts.quarantined += progress.quarantined
                counts.generation_failed += progress.failed
        documents = self.of(DocumentAnnotated)
        counts.annotated = len(documents)
        counts.annotation_failed = len(self.of(AnnotationFailed))
        counts.entities = sum(len(d.entities) for d in documents)
        for document in documents:
            counts.mentions_found += document.alignment.mentions_found
            counts.mentions_aligned += document.alignment.mentions_aligned
            counts.mentions_dropped += document.alignment.mentions_dropped
        agreements = [d.agreement for d in documents if d.agreement is not None]
        counts.agreement = sum(agreements) / len(agreements) if agreements else None
        return counts


class Routes:
    """Which handler consumes each message type, as the services' queues route them in production:
    ``Routes().add(GenerationRequested, generator.handle).add(NoteGenerated, annotate)``."""

    def __init__(self) -> None:
        self._handlers: dict[type[Envelope], Handler] = {}

    def add(self, kind: type[Message], handler: Callable[[Message], Awaitable[Sequence[Envelope]]]) -> Routes:
        async def route(message: Envelope) -> Sequence[Envelope]:
            assert isinstance(message, kind)  # looked up by its exact type
            return await handler(message)

        self._handlers[kind] = route
        return self

    def serve(self, service: Service) -> Routes:
        """Route every message type the service's consumers accept to that consumer's handler."""
        for consumer in service.consumers:
            for kind in consumer.accepts:
                self.add(kind, consumer.handler)
        return self

    def handler(self, message: Envelope) -> Handler | None:
        return self._handlers.get(type(message))


async def run_in_memory(
    first: Envelope, routes: Routes, on_message: Callable[[Envelope], None] | None = None
) -> PipelineRun:
    """Route ``first`` and every message produced from it to the handler for its type, breadth first;
    ``on_message`` sees each message as it is routed (progress bars)."""
    run = PipelineRun()
    pending: deque[Envelope] = deque([first])
    while pending:
        message = pending.popleft()
        run.messages.append(message)
        if on_message is not None:
            on_message(message)
        handler = routes.handler(message)
        if handler is not None:
            pending.extend(await handler(message))
    return run


class Observer:
    """A per-run queue bound to every routing key: a copy of each message, for counting and waiting."""

    def __init__(
        self, broker: BrokerSettings, instance: str, on_message: Callable[[Envelope], None] | None = None
    ) -> None:
        self.role = QueueRole("observer", tuple(kind.routing_key for kind in OBSERVED), per_instance=True)
        self.instance = instance
        self.run = PipelineRun()
        self.on_message = on_message
        self._changed = asyncio.Event()
        consumer = Consumer(self.role, OBSERVED, self._handle, instance=instance)
        self.service = Service(broker, f"synthner-demo/{instance}", [consumer])

    async def _handle(self, message: Envelope) -> Sequence[Envelope]:
        self.run.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)
        self._changed.set()
        return []

    async def wait_for(self, done: Callable[[PipelineRun], bool], deadline_s: float, what: str) -> None:
        """Wait until ``done`` holds for the messages seen so far; TimeoutError names ``what`` after the deadline."""
        try:
            async with asyncio.timeout(deadline_s):
                while not done(self.run):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"{what} did not happen within {deadline_s:g} s") from None


async def broker_reachable(settings: BrokerSettings, timeout_s: float = 5.0) -> bool:
    """True when a connection to the broker opens within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            connection = await aio_pika.connect(settings.url.get_secret_value())
            await connection.close()
    except Exception:  # noqa: BLE001 - any failure to connect means "not reachable" here
        return False
    return True


class _Stoppable(Protocol):
    async def wait_started(self) -> None: ...

    def request_stop(self) -> None: ...


@contextlib.asynccontextmanager
async def running(services: Sequence[Service]) -> AsyncIterator[None]:
    """Start the services (each its own connection), yield once all consume, stop them on exit."""
    async with _running([functools.partial(s.run, install_signal_handlers=False) for s in services], services):
        yield


@contextlib.asynccontextmanager
async def running_apps(apps: Sequence[BrokerApp]) -> AsyncIterator[None]:
    """Run the services as their composition roots built them, yield once all consume, stop them on exit (closing
    them stays with whoever built them)."""
    async with _running([app.run for app in apps], apps):
        yield


@contextlib.asynccontextmanager
async def _running(
    runs: Sequence[Callable[[], Coroutine[object, object, bool]]], parts: Sequence[_Stoppable]
) -> AsyncIterator[None]:
    """Run each of ``runs`` as a task, yield once every part consumes, ask every part to stop on exit."""
    tasks = [asyncio.create_task(run()) for run in runs]
    try:

        async def all_started() -> bool:
            await asyncio.gather(*(part.wait_started() for part in parts))
            return True

        started = asyncio.create_task(all_started())
        done, _ = await asyncio.wait([*tasks, started], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task in done:
                started.cancel()
                task.result()  # a service that ended before starting raises its error (e.g. broker unreachable)
        yield
    finally:
        for part in parts:
            part.request_stop()
        await asyncio.gather(*tasks, return_exceptions=True)


async def delete_namespace(
    settings: BrokerSettings, observer: Observer, instances: dict[str, list[str]] | None = None
) -> None:
    """Remove every queue and exchange of the run's namespace, the observer's queues and those of the per-instance
    roles in ``instances`` (``{"ner-api": ["demo"]}``) included."""
    topology = Topology.from_settings(settings)
    queue = topology.queue_name(observer.role, observer.instance)
    extra = [
        queue,
        topology.dead_letter_queue_name(observer.role),
        *(topology.retry_queue_name(queue, delay) for delay in sorted(set(topology.retry_delays_ms))),
    ]
    connection = await aio_pika.connect(settings.url.get_secret_value())
    try:
        channel = await connection.channel()
        for name in extra:
            await channel.queue_delete(name)
        await topology.delete(channel, instances)
    finally:
        await connection.close()


def new_namespace() -> str:
    return f"synthner-demo-{uuid.uuid4().hex[:10]}"
