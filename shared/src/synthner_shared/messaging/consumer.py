"""The consumer runner: binds a plain async handler (message in, messages out) to a work queue.

Per delivery:

1. decode and validate the body; a body over ``max_message_bytes``, an unknown type/version or an invalid body is
   poison: dead-lettered at once with the reason in the ``x-synthner-dead-letter-reason`` header;
2. skip it (ack) when its idempotency key was already processed by this consumer;
3. call the handler; :class:`RetryableError` (and any unexpected exception) parks the message in a retry queue for
   the back-off delay, up to ``max_retries``, then dead-letters it; :class:`PoisonMessageError` dead-letters it;
4. publish the handler's outputs with confirms, and only then ack the input. While the broker is unavailable
   (reconnecting after a restart, blocked by an alarm) the publish is retried for up to ``output_retry_s`` before the
   input is handed back, since every hand-back counts toward the queue's delivery limit.

A consumer process that dies before acking leaves the message with the broker, which redelivers it; the quorum
queue's ``x-delivery-limit`` dead-letters a message that keeps killing its consumers.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue, ConsumerTag
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from synthner_shared.contracts.envelope import Envelope
from synthner_shared.contracts.registry import MessageDecodeError, decode_message
from synthner_shared.messaging.broker import Broker
from synthner_shared.messaging.errors import (
    BrokerRefused,
    BrokerUnavailable,
    HandlerError,
    PoisonMessageError,
    PublishError,
)
from synthner_shared.messaging.publisher import send_confirmed
from synthner_shared.messaging.topology import QueueRole

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Envelope)

REASON_HEADER = "x-synthner-dead-letter-reason"
QUEUE_HEADER = "x-synthner-queue"
RETRIES_HEADER = "x-synthner-retries"
LAST_ERROR_HEADER = "x-synthner-last-error"
MAX_REASON_CHARS = 2_000

Handler = Callable[[M], Awaitable[Sequence[Envelope]]]


def _message_id_key(message: Envelope) -> str:
    return str(message.message_id)


@dataclass(frozen=True)
class Consumer(Generic[M]):
    """What a service consumes: a role's queue, the message types it accepts, and its handler.

    ``idempotency_key`` defaults to the message id; a content id (``note_id``) makes re-published copies of the same
    content count as duplicates too.
    """

    role: QueueRole
    accepts: tuple[type[M], ...]
    handler: Handler[M]
    idempotency_key: Callable[[M], str] = _message_id_key
    instance: str | None = None


def bounded_reason(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """A reason as it goes into a header, a log line or a message's ``reason`` field: one line (control characters
    become spaces) of at most ``limit`` characters, the note of how much was cut included (never cut silently)."""
    text = "".join(c if c.isprintable() else " " for c in text)
    if len(text) > limit:
        keep = limit - 50  # room for the note below
        text = f"{text[:keep]}... [{len(text) - keep} more characters not shown]"
    return text


def describe_error(exc: BaseException) -> str:
    """A reason for a failure, for the dead-letter header. Handler errors carry their own (PHI-free) message; for any
    other exception only the type is given, since its text may quote the input."""
    if isinstance(exc, HandlerError | PublishError | MessageDecodeError):
        return bounded_reason(f"{type(exc).__name__}: {exc}")
    return bounded_reason(f"unexpected {type(exc).__module__}.{type(exc).__qualname__}")


_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def safe_id(message_id: str | None) -> str:
    """A delivery's AMQP message id for a log line: the sender chose it, so only a short plain token is shown."""
    if message_id is None:
        return "<no id>"
    return message_id if _SAFE_ID.match(message_id) else f"<id of {len(message_id)} characters>"


class ProcessedKeys:
    """Bounded memory of processed idempotency keys (least recently used forgotten first)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def add(self, key: str) -> None:
        if self._capacity == 0:
            return
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)


@dataclass
class ConsumerStats:
    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    requeued: int = 0


def _republished(incoming: AbstractIncomingMessage, headers: Mapping[str, Any]) -> aio_pika.Message:
    """A persistent copy of a delivery with extra headers (for the retry and dead-letter queues)."""
    return aio_pika.Message(
        body=incoming.body,
        headers={**(incoming.headers or {}), **headers},
        content_type=incoming.content_type,
        content_encoding=incoming.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=incoming.message_id,
        correlation_id=incoming.correlation_id,
        type=incoming.type,
        timestamp=incoming.timestamp,
        app_id=incoming.app_id,
    )


def _retries_so_far(incoming: AbstractIncomingMessage) -> int:
    value = (incoming.headers or {}).get(RETRIES_HEADER, 0)
    return value if isinstance(value, int) and value >= 0 else 0


class ConsumerRunner(Generic[M]):
    """Runs one :class:`Consumer` on its own channel of a connected :class:`Broker`."""

    def __init__(self, broker: Broker, consumer: Consumer[M]) -> None:
        self._broker = broker
        self._consumer = consumer
        self._settings = broker.settings
        self._queue_name = broker.topology.queue_name(consumer.role, consumer.instance)
        self._processed = ProcessedKeys(self._settings.idempotency_cache_size)
        self._in_progress: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: ConsumerTag | None = None
        self._stopping = False
        self.stats = ConsumerStats()

    @property
    def queue_name(self) -> str:
        return self._queue_name

    @property
    def consuming(self) -> bool:
        return self._consumer_tag is not None and not self._stopping and self._broker.connected

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        """Declare the role's queues and start consuming with the configured prefetch."""
        self._channel = await self._broker.connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._channel.set_qos(prefetch_count=self._settings.prefetch)
        self._queue = await self._broker.topology.declare_role(
            self._channel, self._consumer.role, self._consumer.instance
        )
        self._consumer_tag = await self._queue.consume(self._on_message)
        log.info("consuming %s (prefetch %d)", self._queue_name, self._settings.prefetch)

    async def stop_consuming(self) -> None:
        """Cancel the subscription: no new deliveries; in-flight work goes on."""
        self._stopping = True
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except CONNECTION_EXCEPTIONS as exc:
                log.warning("cancelling consumer on %s failed: %s", self._queue_name, type(exc).__name__)

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no delivery is in flight; False if ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        """Abandon whatever is still in flight (the broker requeues it) and close the channel."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    # --- per delivery ---------------------------------------------------------------------------------------------

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        if self._stopping:
            self.stats.requeued += 1
            await self._settle(incoming.nack(requeue=True))
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._idle.clear()
        try:
            await self._process(incoming)
        finally:
            self._tasks.discard(task)
            if not self._tasks:
                self._idle.set()

    async def _process(self, incoming: AbstractIncomingMessage) -> None:
        size, limit = len(incoming.body), self._settings.max_message_bytes
        if size > limit:
            await self._dead_letter(incoming, f"message body of {size} bytes is over the limit of {limit} bytes")
            return
        try:
            message = decode_message(incoming.body, self._consumer.accepts)
        except MessageDecodeError as exc:
            await self._dead_letter(incoming, f"undecodable message: {describe_error(exc)}")
            return
        assert isinstance(message, self._consumer.accepts)
        key = self._consumer.idempotency_key(message)
        while (pending := self._in_progress.get(key)) is not None:
            # The same key is being handled right now (a redelivered copy): wait for that outcome first.
            await asyncio.shield(pending)
        if key in self._processed:
            self.stats.duplicates += 1
            log.info("duplicate %s %s on %s acknowledged without processing", message.type, key, self._queue_name)
            await self._settle(incoming.ack())
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_progress[key] = done
        try:
            await self._handle(incoming, message, key)
        finally:
            del self._in_progress[key]
            done.set_result(None)

    async def _handle(self, incoming: AbstractIncomingMessage, message: M, key: str) -> None:
        try:
            outputs = await self._consumer.handler(message)
        except PoisonMessageError as exc:
            await self._dead_letter(incoming, describe_error(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any other failure may be transient: retry with back-off, then DLQ
            log.warning(
                "%s %s on %s failed: %s", message.type, message.message_id, self._queue_name, describe_error(exc)
            )
            await self._retry_or_dead_letter(incoming, exc)
            return
        try:
            await self._publish_outputs(outputs, key)
        except BrokerRefused as exc:
            await self._retry_or_dead_letter(incoming, exc)
            return
        except PublishError as exc:
            # The broker stayed unavailable for output_retry_s: hand the input back (or, with the channel gone, the
            # broker redelivers it anyway).
            log.warning("outputs of %s not confirmed (%s); handing the input back", key, type(exc).__name__)
            self.stats.requeued += 1
            await self._settle(incoming.nack(requeue=True))
            return
        self._processed.add(key)
        self.stats.processed += 1
        await self._settle(incoming.ack())

    async def _publish_outputs(self, outputs: Sequence[Envelope], key: str) -> None:
        """Publish with confirms; while the broker is unavailable, wait for the connection and the publishing channel
        to be back and try again, until ``output_retry_s`` has passed (then raise). A retry may publish an output
        twice (its first confirm may have been lost, not its message): at least once, as everywhere downstream."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.output_retry_s
        attempt = 1
        while True:
            try:
                await self._broker.publisher.publish_many(outputs)
                return
            except BrokerUnavailable as exc:
                remaining = deadline - loop.time()
                if remaining <= 0 or self._stopping:
                    raise
                log.info(
                    "outputs of %s not confirmed (attempt %d: %s); retrying when the broker is back",
                    key,
                    attempt,
                    exc,
                )
            try:
                await self._broker.wait_connected(timeout_s=remaining)
            except TimeoutError:
                raise BrokerUnavailable(
                    f"broker not back within output_retry_s={self._settings.output_retry_s:g}s"
                ) from None
            # A channel that fails at once while the connection looks fine must not make this a busy loop.
            await asyncio.sleep(min(self._settings.reconnect_interval_s, max(0.0, deadline - loop.time())))
            attempt += 1

    async def _retry_or_dead_letter(self, incoming: AbstractIncomingMessage, exc: BaseException) -> None:
        retries = _retries_so_far(incoming) + 1
        reason = describe_error(exc)
        if retries > self._settings.max_retries:
            await self._dead_letter(
                incoming, f"gave up after {self._settings.max_retries} retries; last error: {reason}"
            )
            return
        delay_ms = self._settings.retry_delay_ms(retries)
        retry_queue = self._broker.topology.retry_queue_name(self._queue_name, delay_ms)
        copy = _republished(incoming, {RETRIES_HEADER: retries, LAST_ERROR_HEADER: reason})
        if not await self._move(incoming, self._broker.publish_channel.default_exchange, copy, retry_queue):
            return
        self.stats.retried += 1
        log.info("retry %d of %s in %d ms via %s", retries, safe_id(incoming.message_id), delay_ms, retry_queue)
        await self._settle(incoming.ack())

    async def _dead_letter(self, incoming: AbstractIncomingMessage, reason: str) -> None:
        reason = bounded_reason(reason)
        copy = _republished(incoming, {REASON_HEADER: reason, QUEUE_HEADER: self._queue_name})
        if not await self._move(incoming, self._broker.dead_letter_exchange, copy, self._consumer.role.name):
            return
        self.stats.dead_lettered += 1
        log.warning("dead-lettered %s from %s: %s", safe_id(incoming.message_id), self._queue_name, reason)
        await self._settle(incoming.ack())

    async def _move(
        self, incoming: AbstractIncomingMessage, exchange: AbstractExchange, copy: aio_pika.Message, routing_key: str
    ) -> bool:
        """Publish a copy of a delivery elsewhere (retry or dead-letter queue); on failure requeue the delivery."""
        try:
            await send_confirmed(exchange, copy, routing_key, self._settings.publish_timeout_s)
        except PublishError as publish_error:
            log.warning(
                "could not move %s to %s (%s); requeueing", safe_id(incoming.message_id), routing_key, publish_error
            )
            self.stats.requeued += 1
            await self._settle(incoming.nack(requeue=True))
            return False
        return True

    async def _settle(self, settlement: Awaitable[None]) -> None:
        """Ack/nack, tolerating a channel lost meanwhile (the broker then redelivers the message)."""
        try:
            await settlement
        except CONNECTION_EXCEPTIONS as exc:
            log.warning(
                "could not settle a delivery on %s (%s); the broker will redeliver it",
                self._queue_name,
                type(exc).__name__,
            )
