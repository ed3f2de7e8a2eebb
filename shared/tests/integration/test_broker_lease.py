"""The single-writer lease (an exclusive queue on a connection of its own) against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import socket

import aio_pika
import pytest
from pydantic import SecretStr

from synthner_shared.broker_node import PrivateRabbitMQ
from synthner_shared.messaging import BrokerLease, BrokerSettings, BrokerUnavailable, LeaseRefused

pytestmark = pytest.mark.rabbitmq


async def test_one_holder_at_a_time_and_the_next_takes_over_when_it_releases(broker_settings: BrokerSettings) -> None:
    first = BrokerLease(broker_settings, "writer", holder="first")
    second = BrokerLease(broker_settings, "writer", holder="second")
    assert await first.acquire()
    try:
        assert first.held
        assert not await second.reacquire(timeout_s=5)  # held elsewhere: refused at once
        waiting = asyncio.create_task(second.acquire())
        await asyncio.wait_for(second.waiting.wait(), 10)
        assert not waiting.done()
        await first.release()
        assert await asyncio.wait_for(waiting, 10)
        assert second.held
        assert not first.lost.is_set()  # given up, not lost
    finally:
        await first.release()
        await second.release()


async def test_acquire_returns_false_when_asked_to_stop_while_waiting(broker_settings: BrokerSettings) -> None:
    holder = BrokerLease(broker_settings, "writer", holder="holder")
    waiter = BrokerLease(broker_settings, "writer", holder="waiter")
    stop = asyncio.Event()
    assert await holder.acquire()
    try:
        waiting = asyncio.create_task(waiter.acquire(until=stop.wait))
        await asyncio.wait_for(waiter.waiting.wait(), 10)
        stop.set()
        assert await asyncio.wait_for(waiting, 10) is False
        assert not waiter.held
        assert holder.held
    finally:
        await holder.release()


async def test_a_lease_whose_connection_closes_is_lost_and_can_be_taken_again(broker_settings: BrokerSettings) -> None:
    lease = BrokerLease(broker_settings, "writer", holder="holder")
    assert await lease.acquire()
    try:
        connection = lease._connection
        assert connection is not None
        await connection.close()  # what a broker restart or a network cut does to it
        await asyncio.wait_for(lease.lost.wait(), 10)  # not held any more
        assert await lease.reacquire(timeout_s=10)
        assert lease.held
        assert lease.acquisitions == 2
    finally:
        await lease.release()


async def test_an_unreachable_broker_is_an_error_after_connect_timeout(broker_settings: BrokerSettings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens there once the socket is closed
    settings = broker_settings.model_copy(
        update={
            "url": SecretStr(f"amqp://guest:guest@127.0.0.1:{port}/"),
            "connect_timeout_s": 1.0,
            "reconnect_interval_s": 0.2,
        }
    )
    with pytest.raises(BrokerUnavailable, match="not reachable within 1s"):
        await asyncio.wait_for(BrokerLease(settings, "writer", holder="h").acquire(), 30)


@pytest.mark.broker_restart
async def test_a_user_that_may_not_declare_the_lease_queue_gets_a_clear_error(
    broker_settings: BrokerSettings, private_rabbitmq: PrivateRabbitMQ
) -> None:
    """Users and permissions are changed on a private node only."""
    await private_rabbitmq.rabbitmqctl("add_user", "restricted", "restricted-password")
    await private_rabbitmq.rabbitmqctl("set_permissions", "-p", "/", "restricted", "^other\\..*$", ".*", ".*")
    settings = broker_settings.model_copy(
        update={"url": SecretStr(f"amqp://restricted:restricted-password@127.0.0.1:{private_rabbitmq.port}/")}
    )
    connection = await aio_pika.connect(settings.url.get_secret_value())  # the user itself works
    await connection.close()
    with pytest.raises(LeaseRefused, match="configure permission"):
        await asyncio.wait_for(BrokerLease(settings, "writer", holder="h").acquire(), 30)
