"""Fixtures shared by every test tier: real RabbitMQ with a unique namespace per test, and broker inspection helpers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from synthner_shared.messaging import BrokerSettings, Topology

REPO_ROOT = Path(__file__).resolve().parent
GOLD_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def broker_settings() -> BrokerSettings:
    """Settings for a fresh namespace: fast back-off, low limits, so reliability paths run in a test's time."""
    return BrokerSettings(
        namespace=f"t-{uuid.uuid4().hex[:12]}",
        prefetch=4,
        delivery_limit=2,
        retry_delays_ms=(50, 150),
        max_retries=2,
        publish_timeout_s=10,
        connect_timeout_s=10,
        reconnect_interval_s=0.5,
        shutdown_grace_s=10,
    )


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


@pytest.fixture
async def broker_probe(broker_settings: BrokerSettings) -> AsyncIterator[BrokerProbe]:
    """A probe connection; on teardown every queue and exchange of the test's namespace is deleted."""
    topology = Topology.from_settings(broker_settings)
    connection = await aio_pika.connect_robust(broker_settings.url.get_secret_value())
    channel = await connection.channel()
    await topology.declare_shared(channel)
    try:
        yield BrokerProbe(connection, topology)
    finally:
        cleanup = await connection.channel()
        for name in topology.all_queue_names():
            await cleanup.queue_delete(name)
        await cleanup.exchange_delete(topology.exchange)
        await cleanup.exchange_delete(topology.dead_letter_exchange)
        await connection.close()
