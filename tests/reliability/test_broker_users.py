"""Per-service broker users on a real RabbitMQ node of the test's own (users and permissions are broker
configuration, never changed on the shared node), created from ``deploy/rabbitmq/definitions.json`` — the file the
dev manifests and compose load — by ``deploy/rabbitmq/setup-users.sh``, the script they run.

- each service's user runs its role with the real consumer runner: it declares the topology, consumes its queue,
  parks a failing message in its retry queue (retry exchange), publishes its outputs and dead-letters a poison
  message (dead-letter exchange);
- a user publishing a message type that is not its own is refused by the broker (the NER API's ``NoteGenerated``),
  a user whose password is not set cannot log in, and the script refuses to leave one without a password;
- no service's user can put a message straight into another role's queue: not through the default exchange (only
  the operator may write it), not through the retry exchange by another role's work or retry queue name.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import pytest
from aio_pika.exceptions import ProbableAuthenticationError
from aiormq.exceptions import ChannelAccessRefused

from synthner_ner_api.testing import model_published
from synthner_shared.broker_node import PrivateRabbitMQ, rabbitmq_scripts
from synthner_shared.broker_users import DEFAULT_NAMESPACE, DEFAULT_VHOST, DEFINITIONS_FILE, SERVICE_USERS, user_for
from synthner_shared.contracts import (
    DocumentAnnotated,
    Envelope,
    ModelRollbackRequested,
    NoteGenerated,
    decode_message,
)
from synthner_shared.messaging import (
    ANNOTATOR,
    GENERATOR,
    JOB_PROGRESS,
    NER_API,
    TRAINER,
    BrokerSettings,
    Consumer,
    PoisonMessageError,
    QueueRole,
    RetryableError,
    Service,
)
from synthner_shared.messaging.topology import MODEL_HISTORY, Topology
from synthner_shared.testing import BrokerProbe, annotate_without_entities, running_service, sample_note

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.broker_restart,
    pytest.mark.skipif(rabbitmq_scripts() is None, reason="needs rabbitmq-server to start a private node"),
]

ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = "deploy/rabbitmq/setup-users.sh"
PASSWORDS = {user.name: f"pw-{uuid.uuid4().hex}" for user in SERVICE_USERS}


class Node:
    """A private node with the definitions imported and every user's password set."""

    def __init__(self, node: PrivateRabbitMQ) -> None:
        self.node = node

    def url(self, user: str, password: str | None = None) -> str:
        name = user_for(user).name
        return f"amqp://{name}:{password or PASSWORDS[name]}@127.0.0.1:{self.node.port}/{DEFAULT_VHOST}"

    def settings(self, user: str) -> BrokerSettings:
        return BrokerSettings(
            url=self.url(user),
            namespace=DEFAULT_NAMESPACE,
            retry_delays_ms=(50,),
            max_retries=2,
            connect_timeout_s=20,
        )

    @asynccontextmanager
    async def probe(self, user: str = "operator") -> AsyncIterator[BrokerProbe]:
        connection = await aio_pika.connect_robust(self.url(user))
        try:
            yield BrokerProbe(connection, Topology.from_settings(self.settings(user)))
        finally:
            await connection.close()


async def setup_users(node: PrivateRabbitMQ, passwords: dict[str, str]) -> None:
    """Run ``deploy/rabbitmq/setup-users.sh`` (what the dev manifests and compose run) against ``node``."""
    scripts = rabbitmq_scripts()
    assert scripts is not None
    env = {
        "PATH": f"{scripts}:{os.environ.get('PATH', '')}",
        "HOME": str(node.base_dir),  # the node's Erlang cookie
        "RABBITMQ_CONF_ENV_FILE": str(node.base_dir / "rabbitmq-env.conf"),  # not the system's
        "SYNTHNER_RABBITMQ_NODE": node.node,
        **{"PASSWORD_" + name.upper().replace("-", "_"): password for name, password in passwords.items()},
    }
    process = await asyncio.create_subprocess_exec(
        "sh", str(ROOT / SETUP_SCRIPT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(300):
        output, _ = await process.communicate()
    if process.returncode != 0:
        raise AssertionError(f"setup-users.sh failed ({process.returncode}): {output.decode()[-2000:]}")


@asynccontextmanager
async def configured_node(tmp_path: Path) -> AsyncIterator[Node]:
    async with PrivateRabbitMQ(tmp_path / "node") as node:
        await setup_users(node, PASSWORDS)
        yield Node(node)


def test_the_definitions_hold_a_user_for_every_service() -> None:
    data = json.loads((ROOT / DEFINITIONS_FILE).read_text(encoding="utf-8"))
    assert {u["name"] for u in data["users"]} == {u.name for u in SERVICE_USERS}
    assert all(u["password_hash"] == "" for u in data["users"]), "no password (hash) belongs in the file"


async def publish(url: str, exchange_name: str, routing_key: str, body: bytes = b"{}") -> None:
    """Publish one persistent message with a confirm; raises what the broker answers."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange if exchange_name == "" else await channel.get_exchange(exchange_name)
        await exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key)
    finally:
        await connection.close()


def landing(queue: str) -> str:
    return f"{DEFAULT_NAMESPACE}.{queue}"


def roles(store: Path) -> dict[str, tuple[QueueRole, Sequence[Envelope], str | None]]:
    """user: (the role it consumes, outputs it publishes, the queue they land in)."""
    return {
        "generator": (GENERATOR, [sample_note(1)], landing("annotator")),
        "annotator": (ANNOTATOR, [annotate_without_entities(sample_note(2))], landing("trainer")),
        "trainer": (TRAINER, [model_published("v1", store)], landing(MODEL_HISTORY)),
        "ner-api": (
            NER_API,
            [ModelRollbackRequested(correlation_id="rb-1", producer="ner-api", model_version="v1", requested_by="ops")],
            landing("trainer"),
        ),
        "tracker": (JOB_PROGRESS, [], None),
    }


async def run_role(node: Node, user: str, role: QueueRole, outputs: Sequence[Envelope], lands_in: str | None) -> None:
    """Run ``role`` as ``user`` with the real consumer runner: a good note fails once (retry queue), then yields
    ``outputs``; a poison note is dead-lettered. Checked as the operator, who may read every queue."""
    good, poison = sample_note(10), sample_note(11)
    attempts: list[str] = []
    handled = asyncio.Event()

    async def handle(note: NoteGenerated) -> Sequence[Envelope]:
        attempts.append(note.note_id)
        if note.note_id == poison.note_id:
            raise PoisonMessageError("a poison message")
        if attempts.count(note.note_id) == 1:
            raise RetryableError("fails once")  # parked in the retry queue through the retry exchange
        handled.set()
        return outputs

    instance = "replica-1" if role.per_instance else None
    consumer = Consumer(role, (NoteGenerated,), handle, instance=instance)
    async with running_service(Service(node.settings(user), f"{user}-test", [consumer])), node.probe() as operator:
        queue = operator.topology.queue_name(role, instance)
        for note in (good, poison):  # straight into the role's queue, as the operator's replay does
            await publish(node.url("operator"), "", queue, note.model_dump_json().encode())
        async with asyncio.timeout(30):
            await handled.wait()
        dead = await operator.get(operator.topology.dead_letter_queue_name(role))
        assert decode_message(dead.body).message_id == poison.message_id, user
        if lands_in is not None:
            landed = [await operator.get(lands_in) for _ in outputs]
            assert {decode_message(m.body).message_id for m in landed} == {o.message_id for o in outputs}, user
    assert attempts.count(good.note_id) == 2, f"{user}: retried once, then handled"


async def test_each_services_user_runs_its_role_retries_publishes_and_dead_letters(tmp_path: Path) -> None:
    async with configured_node(tmp_path) as node:
        for user, (role, outputs, lands_in) in roles(tmp_path / "models").items():
            await run_role(node, user, role, outputs, lands_in)


async def test_a_user_publishing_another_services_message_type_is_refused(tmp_path: Path) -> None:
    note = sample_note(3)
    async with configured_node(tmp_path) as node:
        async with node.probe() as operator:  # the topology, as any service declares it at start-up
            await operator.topology.declare_shared(await operator.connection.channel())
        for user in ("ner-api", "annotator", "trainer", "tracker"):
            with pytest.raises(ChannelAccessRefused, match=r"note\.generated"):
                await publish(
                    node.url(user), DEFAULT_NAMESPACE, NoteGenerated.routing_key, note.model_dump_json().encode()
                )
        await publish(
            node.url("generator"), DEFAULT_NAMESPACE, NoteGenerated.routing_key, note.model_dump_json().encode()
        )
        with pytest.raises(ChannelAccessRefused, match=r"document\.annotated"):
            await publish(node.url("generator"), DEFAULT_NAMESPACE, DocumentAnnotated.routing_key)

        async with node.probe("annotator") as annotator:
            received = await annotator.get(annotator.topology.queue_name(ANNOTATOR))
        assert decode_message(received.body).message_id == note.message_id

        await node.node.rabbitmqctl("clear_password", "synthner-tracker")  # as imported, before change_password
        with pytest.raises(ProbableAuthenticationError):
            await aio_pika.connect(node.url("tracker"))
        without_one = {name: password for name, password in PASSWORDS.items() if name != "synthner-trainer"}
        with pytest.raises(AssertionError, match="PASSWORD_SYNTHNER_TRAINER is not set"):
            await setup_users(node.node, without_one)


async def test_a_user_cannot_put_a_message_straight_into_another_roles_queue(tmp_path: Path) -> None:
    sample = sample_note(4)
    note = sample.model_dump_json().encode()
    async with configured_node(tmp_path) as node:
        async with node.probe() as operator:
            topology = operator.topology
            await topology.declare_shared(await operator.connection.channel())
        annotator = topology.queue_name(ANNOTATOR)
        annotator_retry = topology.retry_queue_name(annotator, topology.retry_delays_ms[0])
        for user in ("ner-api", "generator", "trainer", "tracker"):
            with pytest.raises(ChannelAccessRefused, match=r"amq\.default"):
                await publish(node.url(user), "", annotator, note)
            for queue in (annotator, annotator_retry):  # by name through the retry exchange
                with pytest.raises(ChannelAccessRefused, match=re.escape(queue)):
                    await publish(node.url(user), topology.retry_exchange, queue, note)
        async with node.probe() as operator:
            assert await operator.drain(annotator) == []
            assert await operator.drain(annotator_retry) == []
        # What the refusals do not stop: the operator's replay, by name through the default exchange.
        await publish(node.url("operator"), "", annotator, note)
        async with node.probe("annotator") as own:
            received = await own.get(annotator)
        assert decode_message(received.body).message_id == sample.message_id
