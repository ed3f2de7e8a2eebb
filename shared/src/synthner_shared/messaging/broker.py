"""One robust broker connection per process, with a confirm-mode publishing channel and the namespace's topology."""

from __future__ import annotations

import asyncio
import logging
import re
from types import TracebackType
from typing import Self

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from synthner_shared.messaging.errors import BrokerUnavailable
from synthner_shared.messaging.publisher import Publisher
from synthner_shared.messaging.settings import BrokerSettings
from synthner_shared.messaging.topology import Topology

log = logging.getLogger(__name__)

CONSUMER_TIMEOUT_ARGUMENT_SINCE = (4, 3)
"""The first RabbitMQ version that honours ``x-consumer-timeout`` on a subscription (earlier ones ignore it)."""


def parse_version(text: str) -> tuple[int, ...]:
    """``"4.3.1"`` -> ``(4, 3, 1)``; the leading numeric parts only (``"3.13.7+rc.1"`` -> ``(3, 13, 7)``)."""
    match = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


class Broker:
    """A robust connection (it reconnects and restores channels, queues and consumers after a broker restart).

    Use as ``async with Broker(settings, producer="annotator-1") as broker: ...``. Outputs, retries and dead letters
    are published on a channel of their own, so a consumer channel never closes because of a publishing problem.
    """

    def __init__(self, settings: BrokerSettings, producer: str) -> None:
        self.settings = settings
        self.producer = producer
        self.topology = Topology.from_settings(settings)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._dead_letter_exchange: AbstractExchange | None = None
        self._retry_exchange: AbstractExchange | None = None
        self._publisher: Publisher | None = None

    async def connect(self) -> None:
        """Connect and declare the shared topology, retrying both until ``connect_timeout_s``: a broker that goes away
        while the topology is being declared (a restart during a service's start-up) is waited for like one that is
        not up yet. A refusal from a running broker (no permission, a queue declared with other arguments) is raised
        at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.connect_timeout_s
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._connect_once()
                break
            except CONNECTION_EXCEPTIONS as exc:
                if not self._lost_connection(exc):
                    raise
                await self._discard_connection()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise BrokerUnavailable(
                        f"could not connect to {self.settings.redacted_url} within "
                        f"{self.settings.connect_timeout_s:g}s ({attempt} attempts): {type(exc).__name__}: {exc}"
                    ) from None
                log.warning("broker %s not reachable (%s), retrying", self.settings.redacted_url, type(exc).__name__)
                await asyncio.sleep(min(self.settings.reconnect_interval_s, remaining))
        log.info(
            "connected to broker %s (RabbitMQ %s) as %s",
            self.settings.redacted_url,
            self.server_version or "of unknown version",
            self.producer,
        )

    async def _connect_once(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self.settings.url.get_secret_value(),
            reconnect_interval=self.settings.reconnect_interval_s,
            client_properties={"connection_name": self.producer},
        )
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await self.topology.declare_shared(self._channel)
        self._dead_letter_exchange = await self._channel.get_exchange(self.topology.dead_letter_exchange)
        self._retry_exchange = await self._channel.get_exchange(self.topology.retry_exchange)
        self._publisher = Publisher(self._channel, self._exchange, self.settings.publish_timeout_s)

    def _lost_connection(self, exc: BaseException) -> bool:
        """Whether a failure of :meth:`_connect_once` means the broker was not there (worth waiting for) rather than a
        refusal by a running broker."""
        if isinstance(exc, ConnectionError | OSError | aiormq.exceptions.AMQPConnectionError):
            return True
        if isinstance(exc, aiormq.exceptions.ChannelInvalidStateError):
            return True
        connection = self._connection
        return connection is not None and (connection.is_closed or connection.reconnecting)

    async def _discard_connection(self) -> None:
        """Close a half-set-up connection so its robust reconnect loop does not go on in the background."""
        connection, self._connection = self._connection, None
        self._channel = self._exchange = self._dead_letter_exchange = self._retry_exchange = None
        self._publisher = None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except CONNECTION_EXCEPTIONS:
                log.debug("closing a half-open broker connection failed", exc_info=True)

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("broker not connected; call connect() first")
        return self._connection

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            raise RuntimeError("broker not connected; call connect() first")
        return self._publisher

    @property
    def publish_channel(self) -> AbstractChannel:
        if self._channel is None:
            raise RuntimeError("broker not connected; call connect() first")
        return self._channel

    @property
    def dead_letter_exchange(self) -> AbstractExchange:
        if self._dead_letter_exchange is None:
            raise RuntimeError("broker not connected; call connect() first")
        return self._dead_letter_exchange

    @property
    def retry_exchange(self) -> AbstractExchange:
        """Routes to a retry (or work) queue by its name (``Topology.retry_exchange``)."""
        if self._retry_exchange is None:
            raise RuntimeError("broker not connected; call connect() first")
        return self._retry_exchange

    @property
    def server_version(self) -> str:
        """The broker's version as it announced it when the connection opened (``""`` if it did not)."""
        transport = self.connection.transport
        properties = transport.connection.server_properties if transport is not None else {}
        version = properties.get("version", "")
        return version.decode() if isinstance(version, bytes) else str(version)

    @property
    def connected(self) -> bool:
        """True while the connection is open (False while a robust connection is reconnecting)."""
        connection = self._connection
        return connection is not None and not connection.is_closed and not connection.reconnecting

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until the robust connection and the publishing channel are restored; raises ``TimeoutError``."""
        async with asyncio.timeout(timeout_s):
            await self.connection.ready()
            channel = self.publish_channel
            if isinstance(channel, aio_pika.RobustChannel):
                await channel.ready()
