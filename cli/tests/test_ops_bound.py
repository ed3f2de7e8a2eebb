"""The bound on dead-letter and quarantine queues, on a private RabbitMQ node (setting a policy reconfigures a broker,
which the shared node is not for): ``synthner ops policy --apply`` sets it through the management API on queues that
already exist, and a full DLQ refuses dead letters without losing them."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from synthner.main import main
from synthner.supervisor import settings_env
from synthner_shared.broker_node import PrivateRabbitMQ, rabbitmq_scripts
from synthner_shared.broker_users import DEFAULT_NAMESPACE, DEFAULT_VHOST
from synthner_shared.contracts import (
    Envelope,
    ModelRollbackRequested,
    NoteGenerated,
    TrainingRequested,
    decode_message,
)
from synthner_shared.local_llm import free_port
from synthner_shared.messaging import (
    ANNOTATOR,
    QUARANTINE,
    QUEUE_HEADER,
    REASON_HEADER,
    TRAINER,
    BrokerSettings,
    Consumer,
    PoisonMessageError,
    Service,
    Topology,
)
from synthner_shared.testing import BrokerProbe, publish_once, running_service, sample_note

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.skipif(rabbitmq_scripts() is None, reason="rabbitmq-server is not installed"),
]


@pytest.fixture
async def node_with_management(tmp_path: Path) -> AsyncIterator[tuple[PrivateRabbitMQ, int]]:
    """A private node with the management plugin on a free loopback port; its dead-letter worker re-sends refused
    dead letters every second (default: 3 minutes), so the test sees a freed DLQ take them in its time."""
    node = PrivateRabbitMQ(tmp_path / "node")
    port = free_port()
    (node.base_dir / "enabled_plugins").write_text("[rabbitmq_management].\n", encoding="utf-8")
    with (node.base_dir / "rabbitmq.conf").open("a", encoding="utf-8") as conf:
        conf.write(f"management.tcp.port = {port}\nmanagement.tcp.ip = 127.0.0.1\n")
    (node.base_dir / "advanced.config").write_text(
        "[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 1000}]}].\n", encoding="utf-8"
    )
    async with node:
        yield node, port


async def ready_in(connection: aio_pika.abc.AbstractRobustConnection, queue: str) -> int:
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await channel.close()


async def test_a_full_dlq_refuses_dead_letters_and_the_work_queue_keeps_them_until_there_is_room(
    node_with_management: tuple[PrivateRabbitMQ, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    node, management_port = node_with_management
    settings = BrokerSettings(
        url=node.url,
        namespace="bound",
        delivery_limit=2,
        retry_delays_ms=(50,),
        max_retries=1,
        publish_timeout_s=10,
        connect_timeout_s=30,
    )
    monkeypatch.setenv("AMQP_URL", node.url)
    for name, value in settings_env("SYNTHNER_BROKER_", settings).items():
        monkeypatch.setenv(name, value)
    topology = Topology.from_settings(settings)
    connection = await aio_pika.connect_robust(node.url)
    try:
        await topology.declare_shared(await connection.channel())  # the queues exist before the policy
        probe = BrokerProbe(connection, topology)
        management = f"http://guest:guest@127.0.0.1:{management_port}/"
        arguments = ["ops", "policy", "--apply", "--max-length", "1", "--vhost", "/", "--management-url", management]
        assert await asyncio.to_thread(main, arguments) == 0
        assert "policy bound.held-queues set in vhost /" in capsys.readouterr().out
        listed = await node.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "policy")
        policies = {name: policy for name, _, policy in (line.partition("\t") for line in listed.splitlines())}
        dlq, work = topology.dead_letter_queue_name(ANNOTATOR), topology.queue_name(ANNOTATOR)
        assert policies[dlq].strip() == "bound.held-queues"
        assert policies[topology.queue_name(QUARANTINE)].strip() == "bound.held-queues"
        assert policies[work].strip() == ""

        notes = [sample_note(seed) for seed in range(3)]
        calls: dict[str, int] = {}
        one_refused = asyncio.Event()

        async def refuse(note: NoteGenerated) -> Sequence[Envelope]:
            calls[note.note_id] = calls.get(note.note_id, 0) + 1
            if calls[note.note_id] == 2:
                one_refused.set()  # its dead-lettering was refused: it came back to the consumer
            raise PoisonMessageError("note refused by the test annotator (rule 7)")

        one_at_a_time = settings.model_copy(update={"prefetch": 1})
        service = Service(one_at_a_time, "tests", [Consumer(ANNOTATOR, (NoteGenerated,), refuse)])
        async with running_service(service):
            await publish_once(settings, *notes)
            await asyncio.wait_for(one_refused.wait(), timeout=30)
            # the DLQ is full (a quorum queue takes one message past max-length, then refuses): not all are in it,
            # the consumer's dead-lettering was refused and handed the message back to the work queue
            assert await ready_in(connection, dlq) < len(notes)
            assert service.runners[0].stats.requeued >= 1
            # peek still shows a full DLQ: copies to its end are refused, so it hands the originals back instead
            full = await ready_in(connection, dlq)
            assert await asyncio.to_thread(main, ["ops", "dlq", "peek", "annotator"]) == 0
            out = capsys.readouterr().out
            assert out.count("  NoteGenerated  ") == full
            handed_back = re.search(r"(\d+) message\(s\) handed back to the head of the queue", out)
            assert handed_back is not None  # a quorum queue's bound is approximate: at least one copy was refused
            assert 1 <= int(handed_back.group(1)) <= full
            assert await ready_in(connection, dlq) == full
            # taking messages out makes room: every one arrives in the end (moved by the consumer or, past the
            # delivery limit, by the broker's dead-letter worker), none is lost
            arrived: set[str | None] = set()
            while len(arrived) < len(notes):
                arrived.add((await probe.get(dlq, timeout_s=60)).message_id)
            assert arrived == {str(note.message_id) for note in notes}
    finally:
        await connection.close()


async def test_every_ops_command_works_as_the_operator_broker_user(
    node_with_management: tuple[PrivateRabbitMQ, int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``synthner-operator`` from ``deploy/rabbitmq/definitions.json`` (publishes only the operator's commands): the
    commands declare, publish, read, replay through the default exchange and purge within its permissions."""
    node, _ = node_with_management
    await node.rabbitmqctl("import_definitions", str(ROOT / "deploy/rabbitmq/definitions.json"))
    password = f"pw-{uuid.uuid4().hex}"
    await node.rabbitmqctl("change_password", "synthner-operator", password)
    await node.rabbitmqctl("set_permissions", "-p", DEFAULT_VHOST, "guest", ".*", ".*", ".*")  # the test's probe
    url = f"amqp://synthner-operator:{password}@127.0.0.1:{node.port}/{DEFAULT_VHOST}"
    monkeypatch.setenv("AMQP_URL", url)
    monkeypatch.setenv("SYNTHNER_BROKER_NAMESPACE", DEFAULT_NAMESPACE)
    monkeypatch.setenv("SYNTHNER_BROKER_CONNECT_TIMEOUT_S", "20")
    topology = Topology.from_settings(BrokerSettings(namespace=DEFAULT_NAMESPACE))

    async def ops(*arguments: str) -> int:
        return await asyncio.to_thread(main, ["ops", *arguments])

    connection = await aio_pika.connect_robust(f"amqp://guest:guest@127.0.0.1:{node.port}/{DEFAULT_VHOST}")
    try:
        assert await ops("train", "--dataset-version", "ds-1") == 0  # declares the topology as the operator
        probe = BrokerProbe(connection, topology)
        request = decode_message((await probe.get(topology.queue_name(TRAINER))).body)
        assert isinstance(request, TrainingRequested)

        dlq, work = topology.dead_letter_queue_name(ANNOTATOR), topology.queue_name(ANNOTATOR)
        channel = await connection.channel(publisher_confirms=True)
        for message_id in ("m-replay", "m-purge"):
            headers: dict[str, Any] = {QUEUE_HEADER: work, REASON_HEADER: "PoisonMessageError: test"}
            await channel.default_exchange.publish(aio_pika.Message(b"{}", headers=headers, message_id=message_id), dlq)
        await channel.close()
        assert await ops("dlq", "count") == 0
        assert await ops("dlq", "peek", "annotator") == 0
        assert await ops("dlq", "replay", "annotator", "--id", "m-replay") == 0
        assert (await probe.get(work)).message_id == "m-replay"
        assert await ops("dlq", "purge", "annotator", "--yes") == 0
        assert await ops("quarantine", "peek") == 0
        out = capsys.readouterr().out
        assert f"{dlq}  2" in out
        assert "replayed 1 of 2 message(s)" in out
        assert f"{dlq}: deleted 1 message(s)" in out

        # nothing answers the rollback here: the request went out (the operator may publish it), the wait times out
        rollback = ["models", "rollback", "m-1", "--by", "ops", "--store", str(node.base_dir / "no-store")]
        assert await ops(*rollback, "--wait", "1") == 1
        assert "no ModelRolledBack within 1s" in capsys.readouterr().err
        assert isinstance(decode_message((await probe.get(topology.queue_name(TRAINER))).body), ModelRollbackRequested)
    finally:
        await connection.close()
