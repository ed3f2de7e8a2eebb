"""The request path around the routes: the body-size limit, and per request an id, metrics and one log line.

A log line carries the method, route, status, time and request id — never the body or the query string.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synthner_ner_api.errors import ApiError, error_response
from synthner_ner_api.schemas import ErrorOut
from synthner_ner_api.state import api_state

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes is answered with 413 before it is parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise ApiError(413, f"request body over {self.limit} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _too_large(self, send: Send) -> None:
        body = ErrorOut(error=f"request body over {self.limit} bytes").model_dump_json().encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Request id, metrics and one log line per request (method, route, status, time, id — never the body)."""
    supplied = request.headers.get("x-request-id", "")
    request.state.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
    started = time.perf_counter()
    try:
        response = await call_next(request)
    except ApiError as exc:  # raised by BodyLimit while the body streams in
        response = error_response(request, exc.status, exc.message)
    elapsed = time.perf_counter() - started
    route = request.scope.get("route")
    endpoint = getattr(route, "path", "unmatched")
    metrics = api_state(request).metrics
    metrics.requests.labels(endpoint=endpoint, status=str(response.status_code)).inc()
    metrics.latency.labels(endpoint=endpoint).observe(elapsed)
    response.headers["X-Request-ID"] = request.state.request_id
    log.info(
        "%s %s %d %.1fms request_id=%s",
        request.method,
        endpoint,
        response.status_code,
        elapsed * 1000,
        request.state.request_id,
    )
    return response
