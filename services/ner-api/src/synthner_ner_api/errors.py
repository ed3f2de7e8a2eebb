"""Every error is answered as JSON ``{"error": ..., "request_id": ...}`` and counted; none echoes request text.

Validation errors say where and what kind of error, never the sent values or the names of unknown fields.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from synthner_ner_api.schemas import ErrorOut, NerBatchRequest, NerRequest, ReloadRequest
from synthner_ner_api.state import api_state
from synthner_shared.contracts import describe_problems, field_names


class ApiError(Exception):
    """An error answered as JSON with the given status."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s
        """Sent as ``Retry-After`` (429, 503): when the caller may try again."""


def error_response(request: Request, status: int, message: str, retry_after_s: int | None = None) -> JSONResponse:
    api_state(request).metrics.errors.labels(kind=str(status)).inc()
    request_id = getattr(request.state, "request_id", None)
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return JSONResponse(
        ErrorOut(error=message, request_id=request_id).model_dump(), status_code=status, headers=headers
    )


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.message, exc.retry_after_s)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(request, exc.status_code, str(exc.detail))


_REQUEST_FIELDS = frozenset(
    {"body", "query", "header", "path", "cookie"}.union(
        *(field_names(model) for model in (NerRequest, NerBatchRequest, ReloadRequest))
    )
)


async def _on_invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 naming where and what kind of error. FastAPI's own answer quotes each ``input`` (the caller's text);
    here values are never shown, and an unknown field's name or a dict key is shown as ``<unknown key>``."""
    assert isinstance(exc, RequestValidationError)
    return error_response(request, 422, f"invalid request: {describe_problems(exc.errors(), _REQUEST_FIELDS)}")


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_invalid)
