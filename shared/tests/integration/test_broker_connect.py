"""Broker.connect against the real RabbitMQ: a refusal by a running broker is raised at once, not retried until the
connect timeout (the broker going away during the declaration is retried: test_broker_restart.py)."""

from __future__ import annotations

from typing import Any

import aio_pika
import aiormq.exceptions
import pytest

from synthner_shared.messaging import Broker, BrokerSettings
from synthner_shared.messaging.topology import Topology

pytestmark = pytest.mark.rabbitmq


async def test_a_refusal_by_a_running_broker_is_raised_at_once(
    broker_settings: BrokerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(self: Topology, channel: aio_pika.abc.AbstractChannel) -> Any:
        # A real refusal: declaring a built-in exchange's name is refused by the broker (ACCESS_REFUSED).
        await channel.declare_exchange("amq.synthner-test", aio_pika.ExchangeType.TOPIC)

    monkeypatch.setattr(Topology, "declare_shared", refuse)
    broker = Broker(broker_settings.model_copy(update={"connect_timeout_s": 600}), producer="connect-test")
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await broker.connect()
    await broker.close()
