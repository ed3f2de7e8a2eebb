"""Fixtures shared by every test tier: real RabbitMQ with a unique namespace per test, and broker inspection helpers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from synthner_shared.messaging import BrokerSettings, Topology
from synthner_shared.testing import BrokerProbe

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
        await connection.ready()
        await topology.delete(await connection.channel())
        await connection.close()
