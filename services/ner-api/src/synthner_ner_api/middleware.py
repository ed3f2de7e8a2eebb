"""The request path around the routes: the gate (authentication, rate limit, time limit, cancellation), the
body-size limit, security headers, and per request an id, metrics and one log line.

Order, outermost first: the request context (id, metrics, log line, security headers), CORS when configured, the
:class:`Gate`, the :class:`BodyLimit`, the routes. Everything the gate decides it decides from the headers, before a
byte of the body is read: an unauthenticated or rate-limited caller costs no parsing.

A log line carries the method, route, status, time and request id — never the body or the query string.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from fastapi import Request, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synthner_ner_api.dependencies import identify
from synthner_ner_api.errors import ApiError, error_response
from synthner_ner_api.page import PAGE_CSP
from synthner_ner_api.ratelimit import TokenBuckets
from synthner_ner_api.state import ApiState, api_state

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


AUTHENTICATED_PREFIX = "/v1/"
"""Paths the gate authenticates (every API endpoint); probes, metrics, the page and the OpenAPI document are open."""
ADMIN_PREFIX = "/v1/admin/"
GUARDED_PREFIX = "/v1/ner"
"""Paths whose work goes through the model queue: they get the time limit and are cancelled when the client leaves."""
CLIENT_CLOSED_REQUEST = 499
"""The status logged (nginx's convention) for a request whose client disconnected; nobody receives it."""

PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""On the page (``GET /``)."""
API_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""On every other answer: JSON that must never be rendered, framed, sniffed or cached (it may carry entity text)."""
DOCS_SECURITY_HEADERS = {
    name: value for name, value in API_SECURITY_HEADERS.items() if name != "Content-Security-Policy"
}
"""On FastAPI's own documentation pages (``/docs``, ``/redoc``), which load their scripts from a CDN."""


MAX_HELD_REFUSALS = 256
"""429 answers held back at once (``refusal_delay_s``); beyond, they are answered at once: holding must not become a
way to make the server keep thousands of requests open."""
CLOSE_UNREAD_BODY_BYTES = 64 * 1024
"""A request refused before its body is read, with more body than this still to come (or a chunked one), is answered
with ``Connection: close``: the server stops reading rather than taking in and discarding megabytes."""


def refuse_unread(request: Request, status: int, message: str, retry_after_s: int | None = None) -> Response:
    """The error answer to a request whose body is left unread; it closes the connection if much body would follow."""
    response = error_response(request, status, message, retry_after_s)
    declared = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if chunked or (declared is not None and declared.isdigit() and int(declared) > CLOSE_UNREAD_BODY_BYTES):
        response.headers["Connection"] = "close"
    return response


class Gate:
    """Pure ASGI middleware in front of the API endpoints, deciding from the headers alone before the body is read.

    1. Authentication (:func:`~synthner_ner_api.dependencies.identify`): 401 without a valid key or a trusted proxy's
       header; ``/v1/admin/`` needs an admin (403). The caller is left in ``scope["state"]["principal"]``.
    2. The rate limit: one token of the caller's bucket, else 429 with ``Retry-After``, held back for
       ``refusal_delay_s`` (at most until the next token; not when the connection closes on a large unread body, and
       not beyond ``MAX_HELD_REFUSALS`` at once): a client retrying in a tight loop on one connection is slowed to
       about one request a second instead of costing the server a refusal per round trip.
    3. For the NER endpoints: the request runs in a task of its own, cancelled when its client disconnects (its
       queued texts never reach the model) or when ``timeout_s`` passes first (503 with ``Retry-After``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: ApiState,
        limiter: TokenBuckets | None,
        timeout_s: float,
        refusal_delay_s: float = 0.0,
    ) -> None:
        self.app = app
        self.state = state
        self.limiter = limiter
        self.timeout_s = timeout_s
        self.refusal_delay_s = refusal_delay_s
        self._held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(AUTHENTICATED_PREFIX) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # headers and peer only: the body stays unread
        try:
            principal = identify(self.state, request.headers, request.client)
            if path.startswith(ADMIN_PREFIX) and principal.scope != "admin":
                raise ApiError(403, "this endpoint needs an admin key")
            if self.limiter is not None and (wait_s := self.limiter.take(principal.name)):
                limit = f"{self.limiter.rate_per_s:g} requests/s, bursts of {self.limiter.burst}"
                raise ApiError(429, f"this caller's rate limit ({limit}) is reached; retry in {wait_s} s", wait_s)
        except ApiError as exc:
            response = refuse_unread(request, exc.status, exc.message, exc.retry_after_s)
            if exc.status == 429 and "connection" not in response.headers:
                await self._hold(min(self.refusal_delay_s, float(exc.retry_after_s or 0)))
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        if path.startswith(GUARDED_PREFIX):
            await self._guarded(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _hold(self, seconds: float) -> None:
        if seconds <= 0 or self._held >= MAX_HELD_REFUSALS:
            return
        self._held += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self._held -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request in its own task; cancel it when the client disconnects or the time limit passes."""
        body_read = asyncio.Event()
        disconnected = asyncio.Event()
        response_started = False

        async def app_receive() -> Message:
            if body_read.is_set():  # the watcher owns the connection now: all that can come is the disconnect
                await disconnected.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def watch_for_disconnect() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        async def app_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        async def handle() -> None:
            await self.app(scope, app_receive, app_send)

        work = asyncio.create_task(handle())
        watcher = asyncio.create_task(watch_for_disconnect())
        gone = asyncio.create_task(disconnected.wait())
        try:
            await asyncio.wait({work, gone}, timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED)
            if response_started or (work.done() and not disconnected.is_set()):  # answered, or answering
                await work
                return
            work.cancel()  # its queued texts leave the model queue unrun
            await asyncio.gather(work, return_exceptions=True)
            request = Request(scope)
            if disconnected.is_set():
                log.info("client disconnected: request cancelled, its queued work dropped")
                message, status, retry = (
                    "the client disconnected; the request was cancelled",
                    CLIENT_CLOSED_REQUEST,
                    None,
                )
            else:
                message, status, retry = f"no answer within {self.timeout_s:g} s; retry later", 503, 1
            response = error_response(request, status, message, retry)
            if not body_read.is_set():  # a body still uploading after the time limit: stop reading it
                response.headers["Connection"] = "close"
            await response(scope, receive, send)
        finally:
            for task in (work, watcher, gone):
                task.cancel()
            await asyncio.gather(work, watcher, gone, return_exceptions=True)


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes is answered with 413 before it is parsed — from its
    ``Content-Length`` before a byte is read, or as soon as a body streamed without one (chunked) goes over. Then the
    app sees the client as gone, and whatever it would still answer is dropped."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    await self._too_large(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def send_unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, send_unless_refused)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await refuse_unread(Request(scope), 413, f"request body over {self.limit} bytes")(scope, receive, send)


def _security_headers(path: str) -> dict[str, str]:
    if path == "/":
        return PAGE_SECURITY_HEADERS
    if path.startswith(("/docs", "/redoc")):
        return DOCS_SECURITY_HEADERS
    return API_SECURITY_HEADERS


class RequestContext:
    """Pure ASGI middleware, outermost: a request id (the caller's ``X-Request-ID`` when well-formed) in
    ``scope["state"]`` and on the answer, the security headers, metrics, and one log line per request (method, route,
    status, time, id — never the body). Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``: the gate's cheap
    refusals stay cheap under a flood.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = Headers(scope=scope).get("x-request-id", "")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        extra = [("X-Request-ID", request_id), *_security_headers(scope.get("path", "")).items()]
        status = 500
        started_at = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in extra:
                    if name not in headers:
                        headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started_at
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            metrics = api_state(Request(scope)).metrics
            metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            metrics.latency.labels(endpoint=endpoint).observe(elapsed)
            log.info("%s %s %d %.1fms request_id=%s", scope["method"], endpoint, status, elapsed * 1000, request_id)
