"""The consumer runner: binds a plain async handler (message in, messages out) to a work queue.

Per delivery:

1. decode and validate the body; a body over ``max_message_bytes``, an unknown type/version or an invalid body is
   poison: dead-lettered at once with the reason in the ``x-synthner-dead-letter-reason`` header;
2. skip it (ack) when its idempotency key was already processed by this consumer;
3. call the handler within its role's deadline (counted from the delivery); :class:`RetryableError`, an overrun
   deadline (:class:`DeadlineExceeded`) and any unexpected exception park the message in a retry queue for the
   back-off delay, up to ``max_retries`` (counted in the ``x-synthner-retries`` header), then dead-letter it;
   :class:`PoisonMessageError` dead-letters it;
4. publish the handler's outputs with confirms, and only then ack the input. While the broker is unavailable
   (reconnecting after a restart, blocked by an alarm) the publish is retried for up to ``output_retry_s`` before the
   input is handed back.

Failures are counted by the runner, never left to the broker alone: RabbitMQ 4 counts neither a requeueing nack nor a
consumer timeout toward ``x-delivery-limit`` (3.x counted both), so a message that only ever failed that way would
loop. Handler failures are counted in the header above; hand-backs (a requeueing nack after an output or retry publish
failed) are counted per message by this runner, and a message handed back more than ``delivery_limit`` times is
dead-lettered. The subscription carries ``x-consumer-timeout`` (the role's consumer timeout, above its handler
deadline), so the broker takes a message back only from a consumer that is stuck beyond its deadline.

A consumer process that dies before acking leaves the message with the broker, which redelivers it; the quorum
queue's ``x-delivery-limit`` dead-letters a message that keeps killing its consumers (a closed channel counts on every
version). On shutdown, :meth:`ConsumerRunner.close` hands every unsettled delivery back with an explicit requeueing
nack before it closes the channel, so a scale-in does not raise their delivery counts on RabbitMQ 4.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue, ConsumerTag
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from synthner_shared.contracts.envelope import Envelope
from synthner_shared.contracts.registry import MessageDecodeError, decode_message
from synthner_shared.messaging.broker import CONSUMER_TIMEOUT_ARGUMENT_SINCE, Broker, parse_version
from synthner_shared.messaging.errors import (
    BrokerRefused,
    BrokerUnavailable,
    DeadlineExceeded,
    HandlerError,
    PoisonMessageError,
    PublishError,
)
from synthner_shared.messaging.publisher import send_confirmed
from synthner_shared.messaging.topology import QueueRole
from synthner_shared.observability.durations import Durations
from synthner_shared.observability.tracing import consume_span

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Envelope)

REASON_HEADER = "x-synthner-dead-letter-reason"
QUEUE_HEADER = "x-synthner-queue"
RETRIES_HEADER = "x-synthner-retries"
LAST_ERROR_HEADER = "x-synthner-last-error"
MAX_REASON_CHARS = 2_000
CONSUMER_TIMEOUT_ARGUMENT = "x-consumer-timeout"
HANDBACK_MEMORY = 10_000
_WARNED_VERSIONS: set[str] = set()
"""Messages whose hand-backs a runner remembers (least recently handed back forgotten first)."""

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


class HandBacks:
    """How many times this runner handed each message back to the broker (bounded, least recent forgotten first)."""

    def __init__(self, capacity: int = HANDBACK_MEMORY) -> None:
        self._capacity = capacity
        self._counts: OrderedDict[str, int] = OrderedDict()

    def count(self, key: str) -> int:
        """Count one more hand-back of ``key``; returns how many there have been."""
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        while len(self._counts) > self._capacity:
            self._counts.popitem(last=False)
        return count

    def forget(self, key: str) -> None:
        self._counts.pop(key, None)


def delivery_key(incoming: AbstractIncomingMessage) -> str:
    """What identifies a delivered message across its redeliveries: its message id, else a hash of its body."""
    if incoming.message_id:
        return f"id:{incoming.message_id}"
    return f"body:{hashlib.sha256(incoming.body).hexdigest()}"


@dataclass
class ConsumerStats:
    """What a runner did, read by the metrics at scrape time (``synthner_shared.observability.metrics``)."""

    received: int = 0
    """Deliveries taken from the queue (redeliveries included)."""
    published: Counter[str] = field(default_factory=Counter)
    """Outputs published with confirms by processed deliveries, by message type."""
    failed: int = 0
    """Handler failures (each then retried or dead-lettered)."""
    handler_seconds: Durations = field(default_factory=Durations)
    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    requeued: int = 0
    deadline_overruns: int = 0
    requeued_on_close: int = 0


def persistent_copy(incoming: AbstractIncomingMessage, headers: Mapping[str, Any]) -> aio_pika.Message:
    """A persistent copy of a delivery, its body and properties unchanged, with ``headers`` as its headers: what the
    runner parks in a retry queue or dead-letters, and what an operator's sweep moves between queues."""
    return aio_pika.Message(
        body=incoming.body,
        headers=dict(headers),
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
        self._handbacks = HandBacks()
        self._deadline_s = self._settings.handler_deadline_s(consumer.role.name)
        self._consumer_timeout_s = self._settings.consumer_timeout_s(consumer.role.name)
        self._in_progress: dict[str, asyncio.Future[None]] = {}
        self._tasks: dict[asyncio.Task[Any], AbstractIncomingMessage] = {}
        self._settling: dict[int, asyncio.Future[None]] = {}
        """The ack or nack under way of each delivery (by ``id()``) whose task has not ended yet."""
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

    @property
    def handler_deadline_s(self) -> float:
        return self._deadline_s

    @property
    def consumer_timeout_s(self) -> float:
        return self._consumer_timeout_s

    async def start(self) -> None:
        """Declare the role's queues and start consuming with the configured prefetch and the role's consumer
        timeout (``x-consumer-timeout``: honoured by RabbitMQ 4.3 and later, which take it over the queue's policy)."""
        self._channel = await self._broker.connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._channel.set_qos(prefetch_count=self._settings.prefetch)
        self._queue = await self._broker.topology.declare_role(
            self._channel, self._consumer.role, self._consumer.instance
        )
        timeout_ms = round(self._consumer_timeout_s * 1000)
        self._consumer_tag = await self._queue.consume(
            self._on_message, arguments={CONSUMER_TIMEOUT_ARGUMENT: timeout_ms}
        )
        self._warn_if_the_broker_ignores_the_timeout()
        log.info(
            "consuming %s (prefetch %d, handler deadline %gs, consumer timeout %gs)",
            self._queue_name,
            self._settings.prefetch,
            self._deadline_s,
            self._consumer_timeout_s,
        )

    def _warn_if_the_broker_ignores_the_timeout(self) -> None:
        """Once per process and broker version: a broker before 4.3 ignores ``x-consumer-timeout`` on a subscription."""
        text = self._broker.server_version
        version = parse_version(text)
        if not version or version >= CONSUMER_TIMEOUT_ARGUMENT_SINCE or text in _WARNED_VERSIONS:
            return
        _WARNED_VERSIONS.add(text)
        log.warning(
            "RabbitMQ %s ignores x-consumer-timeout on a subscription (honoured from 4.3): the consumer timeout is the "
            "queue's consumer-timeout policy (3.12 and later) or the broker's consumer_timeout; keep it above every "
            "role's handler deadline (docs/messaging.md)",
            text,
        )

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
        """Abandon whatever is still in flight, hand each of those deliveries back with an explicit requeueing nack,
        then close the channel.

        The nacks go first because RabbitMQ 4 counts a message returned by a closing channel toward its delivery
        limit but not a requeueing nack: without them a scale-in or a rolling update would raise the delivery count of
        every message a consumer held (prefetched ones included) and could dead-letter healthy messages."""
        self._stopping = True
        held = dict(self._tasks)
        for task in held:
            task.cancel()
        if held:
            await asyncio.gather(*held, return_exceptions=True)
        for incoming in held.values():
            underway = self._settling.pop(id(incoming), None)
            if underway is not None:  # its task was cancelled while settling: let that settlement finish
                await asyncio.gather(underway, return_exceptions=True)
            elif not incoming.processed:
                self.stats.requeued_on_close += 1
                await self._settle(incoming, requeue=True)
                self._settling.pop(id(incoming), None)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    # --- per delivery ---------------------------------------------------------------------------------------------

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        self.stats.received += 1
        if self._stopping:
            self.stats.requeued += 1
            await self._settle(incoming, requeue=True)
            self._settling.pop(id(incoming), None)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks[task] = incoming
        self._idle.clear()
        deadline = asyncio.get_running_loop().time() + self._deadline_s
        try:
            with consume_span(self._queue_name, incoming.headers, incoming.message_id):
                await self._process(incoming, deadline)
        finally:
            self._tasks.pop(task, None)
            underway = self._settling.get(id(incoming))
            if underway is None or underway.done():  # else cancelled mid-settlement: close() waits for it
                self._settling.pop(id(incoming), None)
            if not self._tasks:
                self._idle.set()

    async def _process(self, incoming: AbstractIncomingMessage, deadline: float) -> None:
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
            await self._settle(incoming)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_progress[key] = done
        try:
            await self._handle(incoming, message, key, deadline)
        finally:
            del self._in_progress[key]
            done.set_result(None)

    async def _call_handler(self, message: M, deadline: float) -> Sequence[Envelope]:
        """The handler's outputs; :class:`DeadlineExceeded` when it is still working at ``deadline`` (it is cancelled;
        work it handed to a thread runs on there, but its outputs are never published)."""
        scope = asyncio.timeout_at(deadline)
        started = asyncio.get_running_loop().time()
        try:
            async with scope:
                return await self._consumer.handler(message)
        except TimeoutError:
            if not scope.expired():
                raise  # the handler's own time-out (an LLM call, say): an ordinary failure
            self.stats.deadline_overruns += 1
            raise DeadlineExceeded(
                f"handler overran its deadline of {self._deadline_s:g}s on {self._queue_name}"
            ) from None
        finally:
            self.stats.handler_seconds.observe(asyncio.get_running_loop().time() - started)

    async def _handle(self, incoming: AbstractIncomingMessage, message: M, key: str, deadline: float) -> None:
        try:
            outputs = await self._call_handler(message, deadline)
        except PoisonMessageError as exc:
            self.stats.failed += 1
            await self._dead_letter(incoming, describe_error(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any other failure may be transient: retry with back-off, then DLQ
            self.stats.failed += 1
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
            await self._hand_back(incoming, f"outputs not confirmed: {type(exc).__name__}")
            return
        self._processed.add(key)
        self._handbacks.forget(delivery_key(incoming))
        self.stats.processed += 1
        self.stats.published.update(output.type for output in outputs)
        await self._settle(incoming)

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
        copy = persistent_copy(
            incoming, {**(incoming.headers or {}), RETRIES_HEADER: retries, LAST_ERROR_HEADER: reason}
        )
        if not await self._move(incoming, self._broker.retry_exchange, copy, retry_queue):
            await self._hand_back(incoming, f"retry queue {retry_queue} did not take it")
            return
        self.stats.retried += 1
        log.info("retry %d of %s in %d ms via %s", retries, safe_id(incoming.message_id), delay_ms, retry_queue)
        await self._settle(incoming)

    async def _dead_letter(self, incoming: AbstractIncomingMessage, reason: str) -> None:
        if not await self._publish_dead_letter(incoming, reason):
            await self._hand_back(incoming, "the dead-letter exchange did not take it")
            return
        await self._settle(incoming)

    async def _publish_dead_letter(self, incoming: AbstractIncomingMessage, reason: str) -> bool:
        reason = bounded_reason(reason)
        copy = persistent_copy(
            incoming, {**(incoming.headers or {}), REASON_HEADER: reason, QUEUE_HEADER: self._queue_name}
        )
        if not await self._move(incoming, self._broker.dead_letter_exchange, copy, self._consumer.role.name):
            return False
        self.stats.dead_lettered += 1
        self._handbacks.forget(delivery_key(incoming))
        log.warning("dead-lettered %s from %s: %s", safe_id(incoming.message_id), self._queue_name, reason)
        return True

    async def _hand_back(self, incoming: AbstractIncomingMessage, why: str) -> None:
        """Requeue a delivery this runner could not finish, counting the hand-back itself: RabbitMQ 4 does not count a
        requeueing nack toward the delivery limit, so without this count a message whose outputs (or retry) can
        never be published would loop. After ``delivery_limit`` hand-backs it is dead-lettered: with the reason when
        the dead-letter exchange takes it, else rejected without requeue, which the queue's own dead-lettering
        (``x-dead-letter-exchange``) routes to the same DLQ."""
        key = delivery_key(incoming)
        count = self._handbacks.count(key)
        limit = self._settings.delivery_limit
        if count <= limit:
            self.stats.requeued += 1
            log.info(
                "handing %s back to %s (%d of %d: %s)",
                safe_id(incoming.message_id),
                self._queue_name,
                count,
                limit,
                why,
            )
            await self._settle(incoming, requeue=True)
            return
        self._handbacks.forget(key)
        reason = f"handed back {limit} times by this consumer without being finished; last: {why}"
        if await self._publish_dead_letter(incoming, reason):
            await self._settle(incoming)
            return
        self.stats.dead_lettered += 1
        log.warning(
            "%s could not be dead-lettered with its reason; rejecting it to %s's dead-letter exchange",
            safe_id(incoming.message_id),
            self._queue_name,
        )
        await self._settle(incoming, requeue=False)

    async def _move(
        self, incoming: AbstractIncomingMessage, exchange: AbstractExchange, copy: aio_pika.Message, routing_key: str
    ) -> bool:
        """Publish a copy of a delivery elsewhere (retry or dead-letter queue); False if the broker did not take it."""
        try:
            await send_confirmed(exchange, copy, routing_key, self._settings.publish_timeout_s)
        except PublishError as publish_error:
            log.warning("could not move %s to %s (%s)", safe_id(incoming.message_id), routing_key, publish_error)
            return False
        return True

    async def _settle(self, incoming: AbstractIncomingMessage, requeue: bool | None = None) -> None:
        """Ack (``requeue`` None) or nack, at most once per delivery, tolerating a channel lost meanwhile (the broker
        then redelivers the message). Shielded: a task cancelled by :meth:`close` never leaves a settlement half sent,
        and close does not nack a delivery settled here."""
        if id(incoming) in self._settling or incoming.processed:
            return
        settlement = asyncio.ensure_future(incoming.ack() if requeue is None else incoming.nack(requeue=requeue))
        self._settling[id(incoming)] = settlement
        try:
            await asyncio.shield(settlement)
        except CONNECTION_EXCEPTIONS as exc:
            log.warning(
                "could not settle a delivery on %s (%s); the broker will redeliver it",
                self._queue_name,
                type(exc).__name__,
            )
