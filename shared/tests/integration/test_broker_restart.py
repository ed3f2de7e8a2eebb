"""Stops and restarts the local RabbitMQ application (``rabbitmqctl stop_app`` / ``start_app``)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator

import pytest

from synthner_shared.contracts import NoteGenerated, decode_message
from synthner_shared.messaging import TRAINER, Broker, BrokerSettings, BrokerUnavailable, Service
from synthner_shared.testing import BrokerProbe, echo_annotator, running_service, sample_note

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.broker_restart,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl to stop the local broker"),
]


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(120):
        _, stderr = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {' '.join(args)} failed: {stderr.decode()[-500:]}"


@pytest.fixture
async def stoppable_broker() -> AsyncIterator[None]:
    """Whatever happens in the test, the broker is running again afterwards."""
    try:
        yield
    finally:
        await rabbitmqctl("start_app")
        await rabbitmqctl("await_startup")


async def test_publishing_to_a_stopped_broker_fails_loudly_and_works_after_it_returns(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe, stoppable_broker: None
) -> None:
    settings = broker_settings.model_copy(update={"publish_timeout_s": 5.0})
    calls: list[NoteGenerated] = []
    publisher_broker = Broker(settings, "test-publisher")
    await publisher_broker.connect()
    try:
        async with running_service(Service(settings, "annotator-test", [echo_annotator(calls)])) as service:
            before, during = sample_note(20), sample_note(21)
            await publisher_broker.publisher.publish(before)
            await broker_probe.get(broker_probe.topology.queue_name(TRAINER))

            await rabbitmqctl("stop_app")
            with pytest.raises(BrokerUnavailable):
                await publisher_broker.publisher.publish(during)

            await rabbitmqctl("start_app")
            await rabbitmqctl("await_startup")
            await publisher_broker.wait_connected(timeout_s=60)
            await publisher_broker.publisher.publish(during)

            # The consumer, on its robust connection, resumed by itself.
            out = await broker_probe.get(broker_probe.topology.queue_name(TRAINER), timeout_s=60)
            assert decode_message(out.body).note_id == during.note_id  # type: ignore[attr-defined]
            assert service.health().ready
        assert [c.note_id for c in calls] == [before.note_id, during.note_id]
    finally:
        await publisher_broker.close()
