"""One LLM request observed: its duration and outcome in the metrics, a client span in the trace, and the trace
context for the request's headers.

``client`` names the caller (``generator``, or the annotator's endpoint name), never a URL with credentials; an error
kind is an HTTP status (``http_429``) or an exception's type, never its text (a server may echo the prompt).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from synthner_shared.observability import tracing
from synthner_shared.observability.metrics import LLM_REQUEST_ERRORS, LLM_REQUEST_SECONDS


@dataclass
class LLMCall:
    """What the block tells the observation: :meth:`failed` for an error answered without an exception escaping."""

    client: str
    headers: dict[str, str] = field(default_factory=dict)
    """The trace context to send with the request (empty while tracing is off)."""
    error: str | None = None

    def failed(self, kind: str) -> None:
        self.error = kind


def error_kind(exc: BaseException) -> str:
    """``http_<status>`` for an error that carries an HTTP status (the SDKs' status errors), else the type's name."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return f"http_{status}" if isinstance(status, int) else type(exc).__name__


@asynccontextmanager
async def llm_call(client: str, operation: str, model: str | None = None) -> AsyncIterator[LLMCall]:
    """Observe one request (one attempt): an exception escaping the block is an error of its type."""
    attributes = {"gen_ai.operation.name": operation, "synthner.llm.client": client}
    if model is not None:
        attributes["gen_ai.request.model"] = model
    call = LLMCall(client)
    started = time.perf_counter()
    try:
        with tracing.client_span(f"{operation} {model or client}", attributes):
            tracing.inject(call.headers)
            yield call
    except BaseException as exc:
        call.failed(error_kind(exc))
        raise
    finally:
        outcome = "ok" if call.error is None else "error"
        LLM_REQUEST_SECONDS.labels(client=client, outcome=outcome).observe(time.perf_counter() - started)
        if call.error is not None:
            LLM_REQUEST_ERRORS.labels(client=client, kind=call.error).inc()
