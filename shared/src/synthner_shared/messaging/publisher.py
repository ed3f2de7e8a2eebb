"""Publishing with publisher confirms and persistent delivery: a publish returns once the broker has the message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, HeadersType
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError
from aio_pika.exceptions import PublishError as ReturnedError

from synthner_shared.contracts.envelope import Envelope
from synthner_shared.messaging.errors import BrokerRefused, BrokerUnavailable
from synthner_shared.observability import tracing

SCHEMA_VERSION_HEADER = "x-schema-version"


def to_amqp(message: Envelope, headers: HeadersType | None = None) -> aio_pika.Message:
    """The AMQP message for an envelope: JSON body, persistent, ids and type also in the properties."""
    return aio_pika.Message(
        body=message.model_dump_json().encode("utf-8"),
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(message.message_id),
        correlation_id=message.correlation_id,
        type=message.type,
        timestamp=message.created_at,
        app_id=message.producer[:255],
        headers={SCHEMA_VERSION_HEADER: message.schema_version, **(headers or {})},
    )


async def send_confirmed(
    exchange: AbstractExchange, message: aio_pika.Message, routing_key: str, timeout_s: float
) -> None:
    """Publish one AMQP message as mandatory and wait for the broker's confirm.

    Raises :class:`BrokerRefused` when the broker nacks or cannot route it, :class:`BrokerUnavailable` when there is
    no connection or no confirm within ``timeout_s``. A robust connection keeps reconnecting in the background; a
    failed publish is never replayed silently, the caller decides.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await exchange.publish(message, routing_key, mandatory=True)
    except ReturnedError:  # a subclass of DeliveryError: the broker returned the message as unroutable
        raise BrokerRefused(f"no queue is bound to routing key {routing_key!r} on exchange {exchange.name!r}") from None
    except DeliveryError as exc:
        raise BrokerRefused(f"broker nacked the message for {routing_key!r} ({type(exc.frame).__name__})") from None
    except TimeoutError:
        raise BrokerUnavailable(f"no publisher confirm within {timeout_s:g}s for {routing_key!r}") from None
    except CONNECTION_EXCEPTIONS as exc:
        raise BrokerUnavailable(f"broker connection unavailable: {type(exc).__name__}: {exc}") from None


class Publisher:
    """Publishes envelopes to the topic exchange, each routed by its type's routing key."""

    def __init__(self, channel: AbstractChannel, exchange: AbstractExchange, timeout_s: float) -> None:
        if not getattr(channel, "publisher_confirms", True):
            raise ValueError("the publisher needs a channel in publisher-confirm mode")
        self._exchange = exchange
        self._timeout_s = timeout_s

    async def publish(self, message: Envelope, headers: HeadersType | None = None) -> None:
        """Publish and wait for the confirm; raises :class:`~synthner_shared.messaging.errors.PublishError`. With
        tracing on, in a span of its own whose context (``traceparent``) travels in the headers."""
        key = message.routing_key
        with tracing.publish_span(self._exchange.name, key, message.type, str(message.message_id)):
            carried: dict[str, Any] = {}
            tracing.inject(carried)
            amqp = to_amqp(message, {**carried, **headers} if headers else carried or None)
            await send_confirmed(self._exchange, amqp, key, self._timeout_s)

    async def publish_many(self, messages: Iterable[Envelope]) -> None:
        """Publish several messages concurrently; returns when all are confirmed, raises if any is not."""
        results = await asyncio.gather(*(self.publish(m) for m in messages), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
