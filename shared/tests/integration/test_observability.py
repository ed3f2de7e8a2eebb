"""Metrics and traces of a consuming service against the real RabbitMQ: ``/metrics`` on the probe port counts each
queue's messages, and a message's trace crosses the broker (publish span -> consumer span -> its outputs' spans)."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from contextlib import AsyncExitStack

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from synthner_shared.app import BrokerApp
from synthner_shared.contracts import Envelope, NoteGenerated
from synthner_shared.messaging import (
    ANNOTATOR,
    TRAINER,
    BrokerSettings,
    Consumer,
    PoisonMessageError,
    Service,
)
from synthner_shared.observability import tracing
from synthner_shared.testing import (
    BrokerProbe,
    annotate_without_entities,
    echo_annotator,
    publish_once,
    running_app,
    running_service,
    sample_note,
)

pytestmark = pytest.mark.rabbitmq


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_on_the_probe_port_count_each_queues_messages_and_the_process(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    good, poison = sample_note(1), sample_note(2)

    async def handle(note: NoteGenerated) -> Sequence[Envelope]:
        if note.note_id == poison.note_id:
            raise PoisonMessageError("refused by the test")
        return [annotate_without_entities(note)]

    port = free_port()
    service = Service(broker_settings, "annotator-test", [Consumer(ANNOTATOR, (NoteGenerated,), handle)])
    app = BrokerApp(service, AsyncExitStack(), ("127.0.0.1", port))
    async with running_app(app), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        await publish_once(broker_settings, good, poison)
        await broker_probe.get(broker_probe.topology.queue_name(TRAINER))
        await broker_probe.get(broker_probe.topology.dead_letter_queue_name(ANNOTATOR))
        assert await service.runners[0].wait_idle(10)
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)
    queue = (("queue", broker_probe.topology.queue_name(ANNOTATOR)),)
    assert found[("synthner_messages_received_total", queue)] == 2
    assert found[("synthner_messages_processed_total", queue)] == 1
    assert found[("synthner_messages_published_total", (*queue, ("type", "DocumentAnnotated")))] == 1
    assert found[("synthner_messages_failed_total", queue)] == 1
    assert found[("synthner_messages_dead_lettered_total", queue)] == 1
    assert found[("synthner_messages_retried_total", queue)] == 0
    assert found[("synthner_handler_seconds_count", queue)] == 2
    assert found[("synthner_handler_seconds_bucket", (("le", "+Inf"), *queue))] == 2
    assert found[("synthner_messages_in_flight", queue)] == 0
    assert found[("synthner_consumer_ready", ())] == 1
    assert found[("process_resident_memory_bytes", ())] > 0
    assert found[("process_cpu_seconds_total", ())] > 0
    for word in {*good.text.split(), *poison.text.split()} - {"and", "the", "of", "with", "in", "a", "to"}:
        assert word not in answer.text


def one(found: Sequence[ReadableSpan], kind: SpanKind, name: str) -> ReadableSpan:
    matching = [s for s in found if s.kind == kind and s.name == name]
    assert len(matching) == 1, [(s.kind, s.name) for s in found]
    return matching[0]


async def test_a_message_and_its_outputs_share_one_trace_across_the_broker(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe, span_exporter: InMemorySpanExporter
) -> None:
    note = sample_note(3)
    async with running_service(Service(broker_settings, "annotator-test", [echo_annotator([])])) as service:
        await publish_once(broker_settings, note)
        out = await broker_probe.get(broker_probe.topology.queue_name(TRAINER))
        assert await service.runners[0].wait_idle(10)
    found = span_exporter.get_finished_spans()
    published = one(found, SpanKind.PRODUCER, f"{note.routing_key} publish")
    consumed = one(found, SpanKind.CONSUMER, f"{broker_probe.topology.queue_name(ANNOTATOR)} process")
    output = one(found, SpanKind.PRODUCER, f"{annotate_without_entities(note).routing_key} publish")
    assert published.context is not None
    assert consumed.context is not None
    assert output.context is not None
    assert consumed.parent is not None
    assert output.parent is not None
    assert consumed.context.trace_id == published.context.trace_id == output.context.trace_id
    assert consumed.parent.span_id == published.context.span_id
    assert output.parent.span_id == consumed.context.span_id
    assert out.headers is not None
    assert str(out.headers["traceparent"]).split("-")[1] == format(published.context.trace_id, "032x")
    for span in found:
        assert note.text not in str(span.attributes)


async def test_without_tracing_no_trace_context_travels(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    assert not tracing.tracing_enabled()
    async with running_service(Service(broker_settings, "annotator-test", [echo_annotator([])])):
        await publish_once(broker_settings, sample_note(4))
        out = await broker_probe.get(broker_probe.topology.queue_name(TRAINER))
    assert "traceparent" not in (out.headers or {})
