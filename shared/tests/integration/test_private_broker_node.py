"""A private RabbitMQ node (``synthner_shared.broker_node``): it answers AMQP once started, keeps durable queues and
persistent messages across a restart, and leaves no process and no epmd registration behind when closed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import aio_pika
import pytest

from synthner_shared.broker_node import PrivateRabbitMQ, rabbitmq_scripts

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.skipif(rabbitmq_scripts() is None, reason="needs rabbitmq-server to start a private node"),
]


def registered_with_epmd(node: str) -> bool:
    try:
        names = subprocess.run(["epmd", "-names"], capture_output=True, text=True, timeout=30, check=False).stdout
    except FileNotFoundError:
        return False
    return f"name {node.split('@', maxsplit=1)[0]} " in names


async def test_a_private_node_keeps_persistent_messages_across_a_restart_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    node = PrivateRabbitMQ(tmp_path / "node")
    async with node:
        assert node.port != 5672
        assert registered_with_epmd(node.node)
        connection = await aio_pika.connect(node.url)
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("kept", durable=True, arguments={"x-queue-type": "quorum"})
        await channel.default_exchange.publish(
            aio_pika.Message(b"persistent", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), "kept"
        )
        await connection.close()

        await node.restart()
        assert node.starts == 2

        connection = await aio_pika.connect(node.url)
        channel = await connection.channel()
        queue = await channel.declare_queue("kept", passive=True)
        message = await queue.get(no_ack=True, fail=False)
        await connection.close()
        assert message is not None
        assert message.body == b"persistent"
        pid = node.pid
    assert not node.running
    assert pid is not None
    assert not registered_with_epmd(node.node)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group (beam.smp and its helpers) is gone
