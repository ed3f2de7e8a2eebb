"""OpenTelemetry traces: AMQP publish and consume spans, NER API requests and LLM calls, with the W3C trace context
(``traceparent``) carried in message headers and outgoing HTTP requests.

Off unless configured: :func:`configure_tracing` installs the SDK's tracer provider with an OTLP/HTTP exporter only
when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, the standard variables; the
other standard ones (``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_HEADERS``, ...) are read by
the SDK itself. Without an endpoint nothing is created or exported, the SDK need not be installed (only
``opentelemetry-api``, whose propagator this uses), and every helper here is a cheap no-op.

Spans carry ids, queue names, routing keys, message types, HTTP methods, routes and status codes, never note text,
entity strings, request bodies or keys.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.context import Context

log = logging.getLogger(__name__)

INSTRUMENTATION = "synthner"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACEPARENT = "traceparent"

_propagator = TraceContextTextMapPropagator()
_tracer: Tracer | None = None
_shutdown: list[Any] = []  # the provider configure_tracing installed (flushed by shutdown_tracing)


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """Reads AMQP headers, whose string values may come back as bytes."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_getter = _HeaderGetter()


def tracing_enabled() -> bool:
    return _tracer is not None


def enable_tracing(provider: trace.TracerProvider) -> None:
    """Trace through ``provider`` (tests pass an SDK provider with an in-memory exporter)."""
    global _tracer  # noqa: PLW0603 - one switch per process, like the SDK's own global provider
    _tracer = provider.get_tracer(INSTRUMENTATION)


def disable_tracing() -> None:
    global _tracer  # noqa: PLW0603
    _tracer = None


def tracing_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """The configured OTLP endpoint, if any."""
    environ = os.environ if environ is None else environ
    for name in ENDPOINT_VARIABLES:
        if value := environ.get(name, "").strip():
            return value
    return None


def configure_tracing(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install the SDK with an OTLP/HTTP exporter when an endpoint is configured; True when traces are exported.

    With an endpoint but without the SDK (the ``otel`` extra of ``synthner-shared``) it logs a warning and leaves
    tracing off: observability never stops a service."""
    environ = os.environ if environ is None else environ
    if tracing_endpoint(environ) is None:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError:
        log.warning(
            "an OTLP endpoint is configured but the OpenTelemetry SDK is not installed (synthner-shared[otel]): "
            "no traces are exported"
        )
        return False
    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _shutdown.append(provider)
    enable_tracing(provider)
    log.info("exporting traces over OTLP/HTTP")
    return True


def shutdown_tracing() -> None:
    """Flush and stop what :func:`configure_tracing` installed (at process exit)."""
    while _shutdown:
        _shutdown.pop().shutdown()
    disable_tracing()


def inject(headers: MutableMapping[str, Any]) -> None:
    """Put the current span's trace context (``traceparent``) into ``headers``; nothing while tracing is off."""
    if _tracer is not None:
        _propagator.inject(headers)


async def trace_request_hook(request: Any) -> None:
    """An ``event_hooks={"request": [...]}`` hook for httpx-style clients: the current trace context into the request's
    headers (nothing while tracing is off)."""
    inject(request.headers)


def extract(headers: Mapping[str, Any] | None) -> Context | None:
    """The trace context a message or request carried (None when it carried none)."""
    if not headers or TRACEPARENT not in headers:
        return None
    return _propagator.extract(headers, getter=_getter)


@contextmanager
def _span(name: str, kind: SpanKind, attributes: Mapping[str, Any], context: Context | None = None) -> Iterator[Span]:
    assert _tracer is not None
    with _tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=dict(attributes), record_exception=False
    ) as span:
        try:
            yield span
        except BaseException as exc:
            # The exception's type only: its text may quote a message.
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__name__)
            raise


def publish_span(exchange: str, routing_key: str, message_type: str, message_id: str) -> AbstractContextManager[Any]:
    """A PRODUCER span around one publish; inside it :func:`inject` writes this span's context into the headers."""
    if _tracer is None:
        return nullcontext()
    return _span(
        f"{routing_key} publish",
        SpanKind.PRODUCER,
        {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "publish",
            "messaging.destination.name": exchange,
            "messaging.rabbitmq.destination.routing_key": routing_key,
            "messaging.message.id": message_id,
            "synthner.message.type": message_type,
        },
    )


def consume_span(queue: str, headers: Mapping[str, Any] | None, message_id: str | None) -> AbstractContextManager[Any]:
    """A CONSUMER span around the handling of one delivery, a child of the publisher's span when the message carried
    a ``traceparent``; the outputs published inside it belong to the same trace."""
    if _tracer is None:
        return nullcontext()
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
    }
    if message_id is not None:
        attributes["messaging.message.id"] = message_id[:64]
    return _span(f"{queue} process", SpanKind.CONSUMER, attributes, extract(headers))


def client_span(name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[Any]:
    """A CLIENT span (an outgoing LLM call); :func:`inject` inside it gives the request its ``traceparent``."""
    if _tracer is None:
        return nullcontext()
    return _span(name, SpanKind.CLIENT, attributes)


def server_span(name: str, headers: Mapping[str, Any], attributes: Mapping[str, Any]) -> AbstractContextManager[Any]:
    """A SERVER span (an HTTP request), a child of the caller's span when the request carried a ``traceparent``."""
    if _tracer is None:
        return nullcontext()
    return _span(name, SpanKind.SERVER, attributes, extract(headers))


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, for log lines; None outside a recorded span."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
