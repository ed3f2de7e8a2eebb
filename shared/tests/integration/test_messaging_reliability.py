"""The messaging layer against the real RabbitMQ: redelivery, dead-lettering, retries, idempotency, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from synthner_shared.contracts import DocumentAnnotated, Envelope, NoteGenerated, decode_message
from synthner_shared.messaging import (
    ANNOTATOR,
    QUEUE_HEADER,
    REASON_HEADER,
    RETRIES_HEADER,
    TRAINER,
    BrokerRefused,
    BrokerSettings,
    Consumer,
    PoisonMessageError,
    RetryableError,
    Service,
    serve_health,
)
from synthner_shared.messaging.consumer import MAX_REASON_CHARS
from synthner_shared.messaging.publisher import send_confirmed, to_amqp
from synthner_shared.testing import (
    BrokerProbe,
    annotate_without_entities,
    echo_annotator,
    publish_once,
    running_service,
    sample_note,
)

pytestmark = pytest.mark.rabbitmq

CONSUMER_PROCESS = Path(__file__).with_name("consumer_process.py")


class ConsumerProcess:
    """``consumer_process.py`` in a subprocess, configured through the environment like a deployed service."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, behaviour: str, settings: BrokerSettings, wait_ready: bool = True) -> ConsumerProcess:
        env = {
            **os.environ,
            "AMQP_URL": settings.url.get_secret_value(),
            "SYNTHNER_BROKER_NAMESPACE": settings.namespace,
            "SYNTHNER_BROKER_PREFETCH": "1",
            "SYNTHNER_BROKER_DELIVERY_LIMIT": str(settings.delivery_limit),
            "SYNTHNER_BROKER_RETRY_DELAYS_MS": json.dumps(list(settings.retry_delays_ms)),
            "SYNTHNER_BROKER_MAX_RETRIES": str(settings.max_retries),
            "SYNTHNER_BROKER_SHUTDOWN_GRACE_S": str(settings.shutdown_grace_s),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CONSUMER_PROCESS),
            behaviour,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        consumer = cls(process)
        if wait_ready:
            await consumer.expect("READY")
        return consumer

    async def expect(self, prefix: str, timeout_s: float = 30.0) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            while True:
                line = (await self.process.stdout.readline()).decode().strip()
                if not line:
                    raise AssertionError(f"consumer process ended (rc={self.process.returncode}) before {prefix!r}")
                if line.startswith(prefix):
                    return line

    async def wait(self, timeout_s: float = 30.0) -> int:
        async with asyncio.timeout(timeout_s):
            return await self.process.wait()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


async def test_handler_output_is_published_and_input_acked(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    calls: list[NoteGenerated] = []
    note = sample_note(1)
    async with running_service(Service(broker_settings, "annotator-test", [echo_annotator(calls)])):
        await publish_once(broker_settings, note)
        out = await broker_probe.get(broker_probe.topology.queue_name(TRAINER))
    document = decode_message(out.body)
    assert isinstance(document, DocumentAnnotated)
    assert document.note_id == note.note_id
    assert [c.message_id for c in calls] == [note.message_id]
    assert await broker_probe.drain(broker_probe.topology.queue_name(ANNOTATOR)) == []


async def test_message_survives_a_consumer_killed_before_ack_and_is_processed_once(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    note = sample_note(2)
    victim = await ConsumerProcess.start("block", broker_settings)
    try:
        await publish_once(broker_settings, note)
        assert await victim.expect("STARTED") == f"STARTED {note.note_id}"
        victim.kill()
        await victim.wait()
    finally:
        victim.kill()
    assert await broker_probe.drain(broker_probe.topology.queue_name(TRAINER)) == [], "the killed consumer emitted"

    calls: list[NoteGenerated] = []
    async with running_service(Service(broker_settings, "annotator-test", [echo_annotator(calls)])):
        out = await broker_probe.get(broker_probe.topology.queue_name(TRAINER))
    assert decode_message(out.body).note_id == note.note_id  # type: ignore[attr-defined]
    assert [c.message_id for c in calls] == [note.message_id]
    assert out.headers is not None
    assert await broker_probe.drain(broker_probe.topology.queue_name(TRAINER)) == []


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        (b"not json at all", "body is not JSON"),
        (b'{"type": "NoSuchMessage", "schema_version": 1}', "unknown message type (a name of 13 characters"),
        (b'{"type": "secret patient text' + b"x" * 20_000 + b'", "schema_version": 1}', "unknown message type"),
        (
            json.dumps({**json.loads(sample_note(5).model_dump_json()), "secret patient text": 1}).encode(),
            "NoteGenerated: <unknown key>: Extra inputs are not permitted [extra_forbidden]",
        ),
        (b'{"type": "NoteGenerated", "schema_version": 99}', "schema_version 99 is not supported"),
        (b'{"type": "ModelPublished", "schema_version": 1}', "not handled by this consumer"),
        (b'{"type": "NoteGenerated", "schema_version": 1, "text": "secret patient text"}', "Field required"),
    ],
)
async def test_undecodable_message_goes_to_the_dlq_at_once_with_its_reason(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe, body: bytes, reason_part: str
) -> None:
    calls: list[NoteGenerated] = []
    async with running_service(Service(broker_settings, "annotator-test", [echo_annotator(calls)])) as service:
        await broker_probe.publish_raw(body, ANNOTATOR.routing_keys[0])
        dead = await broker_probe.get(broker_probe.topology.dead_letter_queue_name(ANNOTATOR))
        # The consumer keeps consuming after a poison message.
        await publish_once(broker_settings, sample_note(3))
        await broker_probe.get(broker_probe.topology.queue_name(TRAINER))
        runner = service.runners[0]
        assert runner.stats.dead_lettered == 1
    assert dead.body == body
    assert dead.headers is not None
    reason = str(dead.headers[REASON_HEADER])
    assert reason_part in reason
    assert "secret patient text" not in reason
    assert len(reason) <= MAX_REASON_CHARS + 50
    assert dead.headers[QUEUE_HEADER] == broker_probe.topology.queue_name(ANNOTATOR)
    assert len(calls) == 1


async def test_message_that_kills_its_consumer_is_dead_lettered_after_the_delivery_limit(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    note = sample_note(4)
    await publish_once(broker_settings, note)
    deliveries = 0
    for _ in range(broker_settings.delivery_limit + 1):
        # The message is waiting, so the process may die before it reports READY.
        crasher = await ConsumerProcess.start("crash", broker_settings, wait_ready=False)
        try:
            assert await crasher.expect("STARTED") == f"STARTED {note.note_id}"
            assert await crasher.wait() == 3
            deliveries += 1
        finally:
            crasher.kill()
    dead = await broker_probe.get(broker_probe.topology.dead_letter_queue_name(ANNOTATOR))
    assert deliveries == broker_settings.delivery_limit + 1
    assert decode_message(dead.body).message_id == note.message_id
    assert dead.headers is not None
    assert dead.headers["x-first-death-reason"] == "delivery_limit"
    assert await broker_probe.drain(broker_probe.topology.queue_name(ANNOTATOR)) == []


async def test_retryable_error_is_retried_through_the_backoff_queues_then_succeeds(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    seen_retries: list[int] = []

    async def flaky(note: NoteGenerated) -> Sequence[Envelope]:
        seen_retries.append(len(seen_retries))
        if len(seen_retries) <= 2:
            raise RetryableError("LLM answered 429")
        return [annotate_without_entities(note)]

    consumer = Consumer(ANNOTATOR, (NoteGenerated,), flaky)
    async with running_service(Service(broker_settings, "annotator-test", [consumer])) as service:
        await publish_once(broker_settings, sample_note(5))
        out = await broker_probe.get(broker_probe.topology.queue_name(TRAINER))
        assert service.runners[0].stats.retried == 2
    assert isinstance(decode_message(out.body), DocumentAnnotated)
    assert len(seen_retries) == 3
    # The input went through each back-off tier once, in order (x-death lists the newest first).
    work = broker_probe.topology.queue_name(ANNOTATOR)
    assert await broker_probe.drain(work) == []
    assert await broker_probe.drain(broker_probe.topology.dead_letter_queue_name(ANNOTATOR)) == []


async def test_retry_headers_record_each_backoff_tier(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    """Read the retried input itself: the broker's x-death shows it expired from each tier queue in turn."""
    work = broker_probe.topology.queue_name(ANNOTATOR)

    async def always_failing(note: NoteGenerated) -> Sequence[Envelope]:
        raise RetryableError("upstream time-out")

    consumer = Consumer(ANNOTATOR, (NoteGenerated,), always_failing)
    async with running_service(Service(broker_settings, "annotator-test", [consumer])):
        await publish_once(broker_settings, sample_note(6))
        dead = await broker_probe.get(broker_probe.topology.dead_letter_queue_name(ANNOTATOR))
    assert dead.headers is not None
    assert dead.headers[RETRIES_HEADER] == broker_settings.max_retries
    reason = str(dead.headers[REASON_HEADER])
    assert f"gave up after {broker_settings.max_retries} retries" in reason
    assert "upstream time-out" in reason
    deaths = dead.headers["x-death"]
    assert isinstance(deaths, list)
    expired_from = {d["queue"] for d in deaths if isinstance(d, dict) and d["reason"] == "expired"}
    assert expired_from == {
        broker_probe.topology.retry_queue_name(work, delay) for delay in broker_settings.retry_delays_ms
    }


async def test_poison_error_from_the_handler_dead_letters_without_retry(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    calls = 0

    async def rejecting(note: NoteGenerated) -> Sequence[Envelope]:
        nonlocal calls
        calls += 1
        raise PoisonMessageError("note has no sentences to annotate")

    consumer = Consumer(ANNOTATOR, (NoteGenerated,), rejecting)
    async with running_service(Service(broker_settings, "annotator-test", [consumer])):
        await publish_once(broker_settings, sample_note(7))
        dead = await broker_probe.get(broker_probe.topology.dead_letter_queue_name(ANNOTATOR))
    assert dead.headers is not None
    assert "note has no sentences to annotate" in str(dead.headers[REASON_HEADER])
    assert RETRIES_HEADER not in dead.headers
    assert calls == 1


async def test_duplicate_delivery_is_not_processed_twice(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    calls: list[NoteGenerated] = []
    note = sample_note(8)
    marker = sample_note(9)
    async with running_service(Service(broker_settings, "annotator-test", [echo_annotator(calls)])) as service:
        await publish_once(broker_settings, note)
        await broker_probe.get(broker_probe.topology.queue_name(TRAINER))
        await publish_once(broker_settings, note)  # the same message again (same message_id), e.g. a re-sent publish
        await publish_once(broker_settings, marker)
        marker_out = await broker_probe.get(broker_probe.topology.queue_name(TRAINER))
        assert service.runners[0].stats.duplicates == 1
    assert decode_message(marker_out.body).note_id == marker.note_id  # type: ignore[attr-defined]
    assert [c.message_id for c in calls] == [note.message_id, marker.message_id]
    assert await broker_probe.drain(broker_probe.topology.queue_name(TRAINER)) == []


async def test_sigterm_lets_in_flight_work_finish_and_consumes_nothing_new(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    first, second = sample_note(10), sample_note(11)
    service = await ConsumerProcess.start("wait-stdin", broker_settings)
    try:
        await publish_once(broker_settings, first, second)
        assert await service.expect("STARTED") == f"STARTED {first.note_id}"
        service.process.send_signal(signal.SIGTERM)
        await service.expect("STOPPING")
        assert service.process.stdin is not None
        service.process.stdin.write(b"finish\n")  # the in-flight work completes only after the signal
        await service.process.stdin.drain()
        assert await service.expect("EXIT") == "EXIT True"
        assert await service.wait() == 0
    finally:
        service.kill()
    outputs = await broker_probe.drain(broker_probe.topology.queue_name(TRAINER))
    assert [decode_message(m.body).note_id for m in outputs] == [first.note_id]  # type: ignore[attr-defined]
    left = await broker_probe.drain(broker_probe.topology.queue_name(ANNOTATOR))
    assert [decode_message(m.body).message_id for m in left] == [second.message_id]


async def test_publish_to_a_routing_key_without_queue_is_refused_loudly(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    service = Service(broker_settings, "test-publisher", [])
    await service.broker.connect()
    try:
        with pytest.raises(BrokerRefused, match="no queue is bound"):
            await send_confirmed(
                await service.broker.publish_channel.get_exchange(broker_probe.topology.exchange),
                to_amqp(sample_note(12)),
                "nobody.listens",
                timeout_s=10,
            )
    finally:
        await service.broker.close()


async def test_health_endpoint_reports_ready_only_while_connected_and_consuming(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    async def get(port: int, path: str) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = (await asyncio.wait_for(reader.read(), 10)).decode()
        writer.close()
        return response

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    service = Service(broker_settings, "annotator-test", [echo_annotator([])], health_address=("127.0.0.1", port))
    assert not service.health().ready
    not_yet = await serve_health(service.health, "127.0.0.1", 0)
    try:
        assert (await get(not_yet.sockets[0].getsockname()[1], "/readyz")).startswith("HTTP/1.1 503")
        assert (await get(not_yet.sockets[0].getsockname()[1], "/livez")).startswith("HTTP/1.1 200")
    finally:
        not_yet.close()
    async with running_service(service):
        response = await get(port, "/readyz")
        assert response.startswith("HTTP/1.1 200")
        assert '"ready": true' in response
    assert not service.health().ready
