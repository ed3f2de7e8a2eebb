"""A server span per HTTP request when tracing is on (``OTEL_EXPORTER_OTLP_ENDPOINT``; see
:mod:`synthner_shared.observability.tracing`), a child of the caller's span when it sent a ``traceparent``.

The span names the method and the route template (``POST /v1/ner``), never the path a caller typed, a query or a
body; its attributes are the method, the route and the status code.
"""

from __future__ import annotations

from opentelemetry.trace import Status, StatusCode
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synthner_shared.observability import tracing


class TraceRequests:
    """Pure ASGI middleware, outermost, so the span covers the gate's refusals too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.tracing_enabled():
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        headers = dict(Headers(scope=scope).items())
        with tracing.server_span(method, headers, {"http.request.method": method}) as span:
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
