"""Delivery that holds on RabbitMQ 4 semantics, against the real broker: handler deadlines, failures counted by the
runner itself (RabbitMQ 4 counts neither a requeueing nack nor a consumer timeout toward ``x-delivery-limit``), held
deliveries handed back explicitly on shutdown, and the consumer timeout sent on the subscription.

Each test prints the version of the broker it ran against (``pytest -s`` shows it)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr

from synthner_shared.broker_node import PrivateRabbitMQ
from synthner_shared.contracts import DocumentAnnotated, Envelope, NoteGenerated, decode_message
from synthner_shared.messaging import (
    ANNOTATOR,
    QUEUE_HEADER,
    REASON_HEADER,
    RETRIES_HEADER,
    TRAINER,
    Broker,
    BrokerSettings,
    BrokerUnavailable,
    Consumer,
    ConsumerRunner,
    Service,
)
from synthner_shared.messaging.broker import parse_version
from synthner_shared.messaging.publisher import to_amqp
from synthner_shared.testing import BrokerProbe, annotate_without_entities, publish_once, running_service, sample_note

pytestmark = pytest.mark.rabbitmq

DELIVERY_COUNT = "x-delivery-count"


async def broker_version(settings: BrokerSettings) -> tuple[int, ...]:
    """The running broker's version, printed for the record."""
    async with Broker(settings, "tests-version") as broker:
        text = broker.server_version
    print(f"RabbitMQ {text} at {settings.redacted_url}")
    return parse_version(text)


async def test_the_running_broker_announces_its_version(broker_settings: BrokerSettings) -> None:
    version = await broker_version(broker_settings)
    assert version >= (3, 8), version  # quorum queues with x-delivery-limit


async def test_a_handler_that_overruns_its_deadline_is_retried_then_dead_lettered_with_the_reason(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    await broker_version(broker_settings)
    settings = broker_settings.model_copy(update={"handler_deadlines_s": {"annotator": 0.3}})
    started: list[str] = []
    cancelled: list[str] = []

    async def stuck(note: NoteGenerated) -> Sequence[Envelope]:
        started.append(note.note_id)
        try:
            await asyncio.Event().wait()  # an LLM that never answers
        except asyncio.CancelledError:
            cancelled.append(note.note_id)
            raise
        return [annotate_without_entities(note)]

    note = sample_note(40)
    async with running_service(Service(settings, "annotator-test", [Consumer(ANNOTATOR, (NoteGenerated,), stuck)])) as (
        service
    ):
        await publish_once(settings, note)
        dead = await broker_probe.get(broker_probe.topology.dead_letter_queue_name(ANNOTATOR))
        stats = service.runners[0].stats
        assert stats.deadline_overruns == settings.max_retries + 1
        assert stats.retried == settings.max_retries
    assert decode_message(dead.body).message_id == note.message_id
    assert dead.headers is not None
    assert dead.headers[RETRIES_HEADER] == settings.max_retries
    reason = str(dead.headers[REASON_HEADER])
    assert f"gave up after {settings.max_retries} retries" in reason
    assert "overran its deadline of 0.3s" in reason
    assert started == cancelled == [note.note_id] * (settings.max_retries + 1)  # each run was stopped, none left over
    assert await broker_probe.drain(broker_probe.topology.queue_name(TRAINER)) == []  # nothing published late


async def test_a_time_out_of_the_handler_itself_is_an_ordinary_failure_not_a_deadline_overrun(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    async def timing_out(note: NoteGenerated) -> Sequence[Envelope]:
        raise TimeoutError("the LLM call timed out")

    async with running_service(
        Service(broker_settings, "annotator-test", [Consumer(ANNOTATOR, (NoteGenerated,), timing_out)])
    ) as service:
        await publish_once(broker_settings, sample_note(41))
        dead = await broker_probe.get(broker_probe.topology.dead_letter_queue_name(ANNOTATOR))
        assert service.runners[0].stats.deadline_overruns == 0
    assert dead.headers is not None
    reason = str(dead.headers[REASON_HEADER])
    assert "TimeoutError" in reason
    assert "deadline" not in reason


async def test_a_message_whose_retry_queue_refuses_it_is_counted_by_the_runner_and_dead_lettered(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    """The retry path's publish fails (the retry queue is gone: unroutable), so the runner hands the input back with a
    requeueing nack, which RabbitMQ 4 does not count: the runner's own count ends the loop."""
    version = await broker_version(broker_settings)
    calls = 0

    async def failing(note: NoteGenerated) -> Sequence[Envelope]:
        nonlocal calls
        calls += 1
        raise ConnectionError("upstream down")

    work = broker_probe.topology.queue_name(ANNOTATOR)
    first_retry_queue = broker_probe.topology.retry_queue_name(work, broker_settings.retry_delays_ms[0])
    async with running_service(
        Service(broker_settings, "annotator-test", [Consumer(ANNOTATOR, (NoteGenerated,), failing)])
    ) as service:
        channel = await broker_probe.connection.channel()
        await channel.queue_delete(first_retry_queue)
        await channel.close()
        note = sample_note(42)  # published by the probe, which declares nothing (a Broker would restore the queue)
        await broker_probe.publish_raw(to_amqp(note).body, ANNOTATOR.routing_keys[0], message_id=str(note.message_id))
        dead = await broker_probe.get(broker_probe.topology.dead_letter_queue_name(ANNOTATOR))
        stats = service.runners[0].stats
    assert dead.headers is not None
    reason = str(dead.headers.get(REASON_HEADER, ""))
    print(f"RabbitMQ {version}: handler calls {calls}, hand-backs {stats.requeued}, reason {reason!r}")
    if reason:  # the runner dead-lettered it (RabbitMQ 4, where only the runner counts; or first on 3.x)
        assert f"handed back {broker_settings.delivery_limit} times" in reason
        assert f"retry queue {first_retry_queue} did not take it" in reason
        assert dead.headers[QUEUE_HEADER] == work
        assert calls == broker_settings.delivery_limit + 1
    else:  # RabbitMQ 3.x counted the same requeues and reached its delivery limit first
        assert version < (4,), "on RabbitMQ 4 a requeue does not count: only the runner can have dead-lettered it"
        assert dead.headers["x-first-death-reason"] == "delivery_limit"
    assert stats.requeued == broker_settings.delivery_limit
    assert await broker_probe.drain(work) == []


async def test_outputs_never_confirmed_are_handed_back_a_bounded_number_of_times_then_dead_lettered(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    """A broker that takes the input's settlement but never confirms an output (a publishing alarm that does not end):
    each run hands the input back after ``output_retry_s``; the runner stops that loop after ``delivery_limit``."""
    settings = broker_settings.model_copy(update={"output_retry_s": 0.0})
    calls = 0

    async def handle(note: NoteGenerated) -> Sequence[Envelope]:
        nonlocal calls
        calls += 1
        return [annotate_without_entities(note)]

    service = Service(settings, "annotator-test", [Consumer(ANNOTATOR, (NoteGenerated,), handle)])

    async def never_confirmed(messages: Any) -> None:
        raise BrokerUnavailable("no publisher confirm (injected)")

    async with running_service(service):
        service.broker.publisher.publish_many = never_confirmed  # type: ignore[method-assign]
        await publish_once(settings, sample_note(43))
        dead = await broker_probe.get(broker_probe.topology.dead_letter_queue_name(ANNOTATOR))
        stats = service.runners[0].stats
    assert dead.headers is not None
    reason = str(dead.headers.get(REASON_HEADER, ""))
    if reason:
        assert "outputs not confirmed: BrokerUnavailable" in reason
        assert calls == settings.delivery_limit + 1
    else:  # 3.x: the broker counted the requeues as well and got there first
        assert dead.headers["x-first-death-reason"] == "delivery_limit"
    assert stats.requeued == settings.delivery_limit
    assert await broker_probe.drain(broker_probe.topology.queue_name(TRAINER)) == []


class RecordingRunner(ConsumerRunner[NoteGenerated]):
    """A runner that records each delivery's ``x-delivery-count`` (the broker's count of earlier returns)."""

    def __init__(self, broker: Broker, consumer: Consumer[NoteGenerated]) -> None:
        super().__init__(broker, consumer)
        self.delivery_counts: dict[str, object] = {}

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        self.delivery_counts[str(incoming.message_id)] = (incoming.headers or {}).get(DELIVERY_COUNT, 0)
        await super()._on_message(incoming)


@pytest.fixture
def held_settings(broker_settings: BrokerSettings) -> BrokerSettings:
    """Prefetch 4, a short grace, so a stop abandons what the consumer holds."""
    return broker_settings.model_copy(update={"prefetch": 4, "shutdown_grace_s": 0.2})


async def test_a_stopped_consumer_hands_back_every_held_message_which_is_then_processed_once(
    held_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    version = await broker_version(held_settings)
    notes = [sample_note(50 + i) for i in range(4)]
    holding = asyncio.Event()
    held: list[str] = []

    async def slow(note: NoteGenerated) -> Sequence[Envelope]:
        held.append(note.note_id)
        if len(held) == len(notes):
            holding.set()
        await asyncio.Event().wait()  # never finishes: the stop abandons it
        return []

    stopping = Service(held_settings, "annotator-scaled-in", [Consumer(ANNOTATOR, (NoteGenerated,), slow)])
    async with running_service(stopping):
        await publish_once(held_settings, *notes)
        await asyncio.wait_for(holding.wait(), 20)
    runner = stopping.runners[0]
    assert runner.stats.requeued_on_close == len(notes)  # nacked one by one before the channel closed

    calls: Counter[str] = Counter()

    async def echo(note: NoteGenerated) -> Sequence[Envelope]:
        calls[note.note_id] += 1
        return [annotate_without_entities(note)]

    async with Broker(held_settings, "annotator-after-restart") as broker:
        after = RecordingRunner(broker, Consumer(ANNOTATOR, (NoteGenerated,), echo))
        await after.start()
        try:
            outputs = [await broker_probe.get(broker_probe.topology.queue_name(TRAINER)) for _ in notes]
        finally:
            await after.stop_consuming()
            await after.wait_idle(10)
            await after.close()
    documents = [decode_message(m.body) for m in outputs]
    assert sorted(d.note_id for d in documents if isinstance(d, DocumentAnnotated)) == sorted(n.note_id for n in notes)
    assert calls == Counter({n.note_id: 1 for n in notes})
    assert await broker_probe.drain(broker_probe.topology.dead_letter_queue_name(ANNOTATOR)) == []
    counts = {str(n.message_id): after.delivery_counts.get(str(n.message_id)) for n in notes}
    seen = sorted(map(str, counts.values()))
    print(f"RabbitMQ {version}: x-delivery-count after an explicit requeue on shutdown: {seen}")
    if version >= (4,):
        assert set(counts.values()) <= {0, None}, counts  # an explicit requeue does not count on RabbitMQ 4
    else:
        assert set(counts.values()) == {1}, counts  # RabbitMQ 3.x counts every return, a requeueing nack included


@pytest.mark.broker_restart
async def test_each_role_subscribes_with_its_consumer_timeout(
    broker_settings: BrokerSettings, private_rabbitmq: PrivateRabbitMQ
) -> None:
    """``rabbitmqctl list_consumers`` on a private node shows the subscription's ``x-consumer-timeout`` argument
    (honoured by RabbitMQ 4.3 and later; older ones keep it but apply the queue's policy or the global timeout)."""
    settings = broker_settings.model_copy(
        update={"url": SecretStr(private_rabbitmq.url), "consumer_timeouts_s": {"annotator": 1_234.0}}
    )
    await broker_version(settings)
    service = Service(settings, "annotator-test", [Consumer(ANNOTATOR, (NoteGenerated,), _never_called)])
    async with running_service(service):
        listing = await private_rabbitmq.rabbitmqctl("list_consumers", "-p", "/", "queue_name", "arguments")
    queue = service.runners[0].queue_name
    lines = [line for line in listing.splitlines() if line.startswith(queue + "\t")]
    assert len(lines) == 1, listing
    assert "x-consumer-timeout" in lines[0]
    assert "1234000" in lines[0]


async def _never_called(note: NoteGenerated) -> Sequence[Envelope]:
    raise AssertionError("no message is published in this test")
