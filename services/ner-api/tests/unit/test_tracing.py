"""NER API requests as server spans when tracing is on: a child of the caller's ``traceparent``, named by the route
template, never by the text sent; and /metrics carries the process's memory and CPU."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


async def test_a_request_is_a_server_span_in_the_callers_trace(
    client: httpx.AsyncClient, span_exporter: InMemorySpanExporter
) -> None:
    text = "Patient Zebediah has asthma"
    response = await client.post(
        "/v1/ner", json={"text": text}, headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )
    assert response.status_code == 200
    (span,) = span_exporter.get_finished_spans()
    assert span.kind == SpanKind.SERVER
    assert span.name == "POST /v1/ner"
    assert span.context is not None
    assert span.parent is not None
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert format(span.parent.span_id, "016x") == CALLER_SPAN
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert "Zebediah" not in str(span.attributes)


async def test_metrics_carry_the_process_memory_and_cpu(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert "process_resident_memory_bytes " in text
    assert "process_cpu_seconds_total " in text
    assert 'synthner_ner_model_info{version="v1"} 1.0' in text
