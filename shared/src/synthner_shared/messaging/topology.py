"""The broker topology, declared in one place.

- one durable **topic exchange** ``<ns>`` that every message is published to, routed by the message's routing key;
- one durable **quorum queue** per consumer role (``<ns>.<role>``), with ``x-delivery-limit`` and dead-lettering
  (at-least-once) to the direct exchange ``<ns>.dlx``, which routes to ``<ns>.<role>.dlq``;
- per role and back-off delay a **retry queue** ``<queue>.retry.<ms>ms``: a message parked there expires after
  ``<ms>`` and is dead-lettered back to its work queue (queue-level TTL, so no message waits behind a longer one);
- the durable **topic exchange** ``<ns>.retry`` that routes by queue name: each retry queue and each work queue is
  bound to it with its own name as the routing key. The consumer runner parks a retry through it, and a retry queue
  dead-letters back through it. It replaces the default exchange for these moves because the default exchange is not
  a topic exchange: RabbitMQ's topic permissions can narrow what a service's user publishes on ``<ns>.retry`` (its own
  role's retry queues only, ``synthner_shared.broker_users``), never on the default exchange. (Retry queues of
  earlier versions, ``<queue>.retry.<ms>``, dead-lettered through the default exchange; a queue's arguments cannot
  change, hence the new names. Old ones still return what they hold, and an operator deletes them once empty.)
- roles that every replica must hear (model events for the NER API) get one queue per instance, which expires
  when its replica has been gone for an hour.

Every routing key a service publishes is bound to at least one durable queue, so publishing with ``mandatory`` never
loses a message silently. Declarations are idempotent; every service declares the shared part at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from synthner_shared.contracts.messages import (
    AdaptationRequested,
    AnnotationFailed,
    DocumentAnnotated,
    GenerationFailed,
    GenerationProgress,
    GenerationRequested,
    GeneratorAdapted,
    ModelPinReleaseRequested,
    ModelPublished,
    ModelRollbackRequested,
    ModelRolledBack,
    NoteGenerated,
    NoteQuarantined,
    TrainingRequested,
)
from synthner_shared.messaging.settings import BrokerSettings

INSTANCE_QUEUE_EXPIRES_MS = 3_600_000
MODEL_HISTORY_LENGTH = 1_000


@dataclass(frozen=True)
class QueueRole:
    """A consumer role: the routing keys its queue receives; ``per_instance`` gives each replica its own queue."""

    name: str
    routing_keys: tuple[str, ...]
    per_instance: bool = False


GENERATOR = QueueRole("generator", (GenerationRequested.routing_key,))
ANNOTATOR = QueueRole("annotator", (NoteGenerated.routing_key,))
TRAINER = QueueRole(
    "trainer",
    (
        DocumentAnnotated.routing_key,
        TrainingRequested.routing_key,
        AdaptationRequested.routing_key,
        ModelRollbackRequested.routing_key,
        ModelPinReleaseRequested.routing_key,
    ),
)
FAILURES = QueueRole("failures", (GenerationFailed.routing_key, AnnotationFailed.routing_key))
NER_API = QueueRole("ner-api", (ModelPublished.routing_key, ModelRolledBack.routing_key), per_instance=True)
QUARANTINE = QueueRole("quarantine", (NoteQuarantined.routing_key,))
"""Notes that failed the leak gate, kept for human review; no service consumes it automatically."""
JOB_PROGRESS = QueueRole("job-progress", (GenerationProgress.routing_key,))
"""Generation progress events, consumed by the one job tracker."""
SHARED_ROLES: tuple[QueueRole, ...] = (GENERATOR, ANNOTATOR, TRAINER, FAILURES, QUARANTINE, JOB_PROGRESS)
MODEL_HISTORY = "model-history"
"""A bounded queue keeping the last model events (``model.published``, ``model.rolled_back``, ``generator.adapted``),
so they always have a durable route."""


@dataclass(frozen=True)
class Topology:
    """Names and arguments of every exchange and queue of one namespace."""

    namespace: str
    delivery_limit: int
    retry_delays_ms: tuple[int, ...]

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> Topology:
        return cls(settings.namespace, settings.delivery_limit, settings.retry_delays_ms)

    @property
    def exchange(self) -> str:
        return self.namespace

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dlx"

    @property
    def retry_exchange(self) -> str:
        """The topic exchange that routes a message to a retry or work queue by the queue's name."""
        return f"{self.namespace}.retry"

    def queue_name(self, role: QueueRole, instance: str | None = None) -> str:
        if role.per_instance:
            if not instance:
                raise ValueError(f"role {role.name!r} has one queue per instance; give the instance name")
            return f"{self.namespace}.{role.name}.{instance}"
        return f"{self.namespace}.{role.name}"

    def dead_letter_queue_name(self, role: QueueRole) -> str:
        return f"{self.namespace}.{role.name}.dlq"

    def retry_queue_name(self, queue_name: str, delay_ms: int) -> str:
        return f"{queue_name}.retry.{delay_ms}ms"

    def _quorum(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {"x-queue-type": "quorum", **extra}

    def work_queue_arguments(self, role: QueueRole) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            # All replicas of a role share one DLQ, whatever their queue is called.
            "x-dead-letter-routing-key": role.name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        if role.per_instance:
            arguments["x-expires"] = INSTANCE_QUEUE_EXPIRES_MS
        return self._quorum(arguments)

    def retry_queue_arguments(self, role: QueueRole, queue_name: str, delay_ms: int) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": self.retry_exchange,
            "x-dead-letter-routing-key": queue_name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        if role.per_instance:
            arguments["x-expires"] = INSTANCE_QUEUE_EXPIRES_MS
        return self._quorum(arguments)

    async def declare_exchanges(self, channel: AbstractChannel) -> AbstractExchange:
        """Declare the topic exchange, the dead-letter exchange and the retry exchange; returns the topic exchange."""
        await channel.declare_exchange(self.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        await channel.declare_exchange(self.retry_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        return await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)

    async def declare_shared(self, channel: AbstractChannel) -> AbstractExchange:
        """Declare everything but the per-instance queues, so every routing key has a durable route."""
        exchange = await self.declare_exchanges(channel)
        for role in SHARED_ROLES:
            await self.declare_role(channel, role)
        await self.declare_dead_letter_queue(channel, NER_API)
        history = await channel.declare_queue(
            f"{self.namespace}.{MODEL_HISTORY}",
            durable=True,
            arguments=self._quorum({"x-max-length": MODEL_HISTORY_LENGTH, "x-overflow": "drop-head"}),
        )
        for routing_key in (ModelPublished.routing_key, ModelRolledBack.routing_key, GeneratorAdapted.routing_key):
            await history.bind(self.exchange, routing_key)
        return exchange

    async def declare_dead_letter_queue(self, channel: AbstractChannel, role: QueueRole) -> AbstractQueue:
        dlq = await channel.declare_queue(self.dead_letter_queue_name(role), durable=True, arguments=self._quorum({}))
        await dlq.bind(self.dead_letter_exchange, role.name)
        return dlq

    async def declare_role(
        self, channel: AbstractChannel, role: QueueRole, instance: str | None = None
    ) -> AbstractQueue:
        """Declare a role's work queue (bound to its routing keys), its DLQ and its retry queues; the work queue and
        each retry queue are bound to the retry exchange by their own names."""
        await self.declare_dead_letter_queue(channel, role)
        name = self.queue_name(role, instance)
        queue = await channel.declare_queue(name, durable=True, arguments=self.work_queue_arguments(role))
        for routing_key in role.routing_keys:
            await queue.bind(self.exchange, routing_key)
        await queue.bind(self.retry_exchange, name)
        for delay_ms in sorted(set(self.retry_delays_ms)):
            retry_name = self.retry_queue_name(name, delay_ms)
            retry_queue = await channel.declare_queue(
                retry_name, durable=True, arguments=self.retry_queue_arguments(role, name, delay_ms)
            )
            await retry_queue.bind(self.retry_exchange, retry_name)
        return queue

    def all_queue_names(self, instances: dict[str, list[str]] | None = None) -> list[str]:
        """Every queue of the namespace (per-instance queues for the given instances), e.g. to delete them."""
        instances = instances or {}
        names = [f"{self.namespace}.{MODEL_HISTORY}"]
        for role in (*SHARED_ROLES, NER_API):
            names.append(self.dead_letter_queue_name(role))
            queues = (
                [self.queue_name(role, i) for i in instances.get(role.name, [])]
                if role.per_instance
                else [self.queue_name(role)]
            )
            for queue in queues:
                names.append(queue)
                names.extend(self.retry_queue_name(queue, d) for d in sorted(set(self.retry_delays_ms)))
        return names

    async def delete(self, channel: AbstractChannel, instances: dict[str, list[str]] | None = None) -> None:
        """Delete every queue and exchange of the namespace (tests, benchmarks, demo clean-up)."""
        for name in self.all_queue_names(instances):
            await channel.queue_delete(name)
        await channel.exchange_delete(self.exchange)
        await channel.exchange_delete(self.dead_letter_exchange)
        await channel.exchange_delete(self.retry_exchange)
