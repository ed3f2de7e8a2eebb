"""The FastAPI application: NER endpoints, model admin, probes, metrics and the page for people.

Request text and entity strings are never logged: log lines carry the request id, path, status, sizes and timings.
Every error is JSON ``{"error": ..., "request_id": ...}``; validation errors say where and what kind of error, never
the sent values or the names of unknown fields. The OpenAPI document declares the API-key schemes (or the
authenticating proxy's header) and the configured size limits.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synthner_ner_api.auth import ApiKeys, Principal
from synthner_ner_api.batcher import MicroBatcher
from synthner_ner_api.models import LoadedModel, ModelNotFound, ModelRegistry, SpanPrediction, UnknownModelVersion
from synthner_ner_api.page import PAGE_HTML
from synthner_ner_api.schemas import (
    BatchItemOut,
    EntityOut,
    ErrorOut,
    ModelInfo,
    NerBatchRequest,
    NerBatchResponse,
    NerRequest,
    NerResponse,
    ReloadRequest,
    SwapResult,
)
from synthner_ner_api.settings import NerApiSettings
from synthner_shared.contracts import describe_problems, field_names

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ApiError(Exception):
    """An error answered as JSON with the given status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "synthner_ner_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "synthner_ner_request_seconds",
            "Request latency",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.batch_texts = Histogram(
            "synthner_ner_batch_texts",
            "Texts per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.model_version = Gauge(
            "synthner_ner_model_info", "The model version being served (value 1)", ["version"], registry=self.registry
        )
        self.errors = Counter("synthner_ner_errors", "Errors answered", ["kind"], registry=self.registry)

    def serving(self, version: str) -> None:
        self.model_version.clear()
        self.model_version.labels(version=version).set(1)


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


def _entities(text: str, spans: Sequence[SpanPrediction]) -> list[EntityOut]:
    return [
        EntityOut(start=s.start, end=s.end, label=s.label, text=text[s.start : s.end], score=round(s.score, 4))
        for s in spans
    ]


# The two ways to send a key, as OpenAPI security schemes (either one will do). They only read the headers: the
# checks, and the 401s, are in `authenticated`.
BEARER = HTTPBearer(
    scheme_name="BearerKey", auto_error=False, description="An API key as `Authorization: Bearer <key>`."
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKeyHeader", auto_error=False, description="An API key as `X-API-Key: <key>`."
)
_PROXY_SCHEME = "AuthenticatingProxy"


def authenticated(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)],
) -> Principal:
    """The caller, from an API key or from the authenticating proxy's header (per ``auth_mode``)."""
    settings: NerApiSettings = request.app.state.api.settings
    if settings.auth_mode == "trusted_proxy":
        user = request.headers.get(settings.proxy_user_header)
        if not user:
            raise ApiError(401, f"missing {settings.proxy_user_header} from the authenticating proxy")
        return Principal(user[:100], "admin")
    api_keys: ApiKeys | None = request.app.state.api.api_keys
    assert api_keys is not None, "api_keys mode without keys is refused by the settings"
    key = bearer.credentials.strip() if bearer is not None else (x_api_key or "").strip()
    if not key:
        raise ApiError(401, "an API key is required (Authorization: Bearer <key> or X-API-Key)")
    principal = api_keys.authenticate(key)
    if principal is None:
        raise ApiError(401, "invalid API key")
    return principal


def admin(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    if principal.scope != "admin":
        raise ApiError(403, "this endpoint needs an admin key")
    return principal


User = Annotated[Principal, Depends(authenticated)]
Admin = Annotated[Principal, Depends(admin)]


def _request_id(request: Request) -> str:
    value: str = request.state.request_id
    return value


@dataclass
class ApiState:
    """Everything a request handler needs, held on ``app.state.api``."""

    settings: NerApiSettings
    registry: ModelRegistry
    batcher: MicroBatcher
    metrics: Metrics
    api_keys: ApiKeys | None


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(api_state)]
router = APIRouter()


def check_length(state: ApiState, text: str) -> None:
    limit = state.settings.max_text_chars
    if len(text) > limit:
        raise ApiError(413, f"text of {len(text)} characters is over the limit of {limit}")


async def annotate(state: ApiState, texts: Sequence[str]) -> tuple[str, list[list[SpanPrediction]]]:
    if state.registry.current is None:
        raise ApiError(503, "no model is loaded yet")
    return await state.batcher.predict(texts)


@router.post("/v1/ner", response_model=NerResponse, summary="Entities in one text")
async def ner(body: NerRequest, request: Request, state: State, _: User) -> NerResponse:
    check_length(state, body.text)
    version, (spans,) = await annotate(state, [body.text])
    return NerResponse(entities=_entities(body.text, spans), model_version=version, request_id=_request_id(request))


@router.post("/v1/ner/batch", response_model=NerBatchResponse, summary="Entities in many texts, one model version")
async def ner_batch(body: NerBatchRequest, request: Request, state: State, _: User) -> NerBatchResponse:
    if len(body.items) > state.settings.max_batch_items:
        raise ApiError(413, f"{len(body.items)} items is over the limit of {state.settings.max_batch_items} per batch")
    for item in body.items:
        check_length(state, item.text)
    version, results = await annotate(state, [item.text for item in body.items])
    return NerBatchResponse(
        results=[
            BatchItemOut(id=item.id, entities=_entities(item.text, spans))
            for item, spans in zip(body.items, results, strict=True)
        ],
        model_version=version,
        request_id=_request_id(request),
    )


@router.get("/v1/model", response_model=ModelInfo, summary="The model being served")
async def get_model(state: State, _: User) -> ModelInfo:
    model, previous = state.registry.current, state.registry.previous
    if model is None:
        raise ApiError(503, "no model is loaded yet")
    return ModelInfo(
        version=model.version,
        labels=model.labels,
        base_model=model.base_model,
        metrics=model.metrics,
        previous_version=previous.version if previous else None,
        serving=model.serving,
    )


async def _swapped(state: ApiState, action: Callable[[], Awaitable[LoadedModel]]) -> SwapResult:
    try:
        model = await action()
    except UnknownModelVersion as exc:
        raise ApiError(404, str(exc)) from None
    except ModelNotFound as exc:
        raise ApiError(409, str(exc)) from None
    state.metrics.serving(model.version)
    previous = state.registry.previous
    return SwapResult(version=model.version, previous_version=previous.version if previous else None)


@router.post("/v1/admin/reload", response_model=SwapResult, summary="Load a version (default: newest) and swap")
async def reload(body: ReloadRequest, state: State, _: Admin) -> SwapResult:
    return await _swapped(state, lambda: state.registry.load(body.version))


@router.post("/v1/admin/rollback", response_model=SwapResult, summary="Swap back to the previous version")
async def rollback(state: State, _: Admin) -> SwapResult:
    return await _swapped(state, state.registry.rollback)


@router.get("/livez", include_in_schema=False)
async def livez() -> dict[str, Any]:
    return {"live": True}


@router.get("/readyz", include_in_schema=False)
async def readyz(state: State) -> JSONResponse:
    model = state.registry.current
    body = {"ready": model is not None, "model_version": model.version if model else None}
    return JSONResponse(body, status_code=200 if model is not None else 503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE_HTML)


def _error_response(request: Request, status: int, message: str) -> JSONResponse:
    state: ApiState = request.app.state.api
    state.metrics.errors.labels(kind=str(status)).inc()
    request_id = getattr(request.state, "request_id", None)
    return JSONResponse(ErrorOut(error=message, request_id=request_id).model_dump(), status_code=status)


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _error_response(request, exc.status, exc.message)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return _error_response(request, exc.status_code, str(exc.detail))


_REQUEST_FIELDS = frozenset(
    {"body", "query", "header", "path", "cookie"}.union(
        *(field_names(model) for model in (NerRequest, NerBatchRequest, ReloadRequest))
    )
)


async def _on_invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 naming where and what kind of error. FastAPI's own answer quotes each ``input`` (the caller's text);
    here values are never shown, and an unknown field's name or a dict key is shown as ``<unknown key>``."""
    assert isinstance(exc, RequestValidationError)
    return _error_response(request, 422, f"invalid request: {describe_problems(exc.errors(), _REQUEST_FIELDS)}")


def _declare_limits_and_auth(schema: dict[str, Any], settings: NerApiSettings) -> None:
    """Put the configured limits (413 above them) and, behind a proxy, the proxy's scheme into the OpenAPI document.

    The limits are settings of each deployment, enforced in the handlers with 413 (not pydantic's 422), so they are
    written into the generated document rather than into the static pydantic models.
    """
    components = schema.setdefault("components", {})
    models = components.get("schemas", {})
    for model in ("NerRequest", "BatchItemIn"):
        models[model]["properties"]["text"]["maxLength"] = settings.max_text_chars
    models["NerBatchRequest"]["properties"]["items"]["maxItems"] = settings.max_batch_items
    schema["info"]["description"] += (
        f"\n\nLimits (413 above them): a text of at most {settings.max_text_chars} characters, at most "
        f"{settings.max_batch_items} items per batch, a request body of at most {settings.max_body_bytes} bytes."
    )
    if settings.auth_mode != "trusted_proxy":
        return
    header = settings.proxy_user_header
    components["securitySchemes"] = {
        _PROXY_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": header,
            "description": "Set by the authenticating proxy in front of the API; clients authenticate to the proxy.",
        }
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "security" in operation:
                operation["security"] = [{_PROXY_SCHEME: []}]


async def _request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Request id, metrics and one log line per request (method, route, status, time, id — never the body)."""
    supplied = request.headers.get("x-request-id", "")
    request.state.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
    started = time.perf_counter()
    try:
        response = await call_next(request)
    except ApiError as exc:  # raised by BodyLimit while the body streams in
        response = _error_response(request, exc.status, exc.message)
    elapsed = time.perf_counter() - started
    route = request.scope.get("route")
    endpoint = getattr(route, "path", "unmatched")
    metrics: Metrics = request.app.state.api.metrics
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


def create_app(
    settings: NerApiSettings,
    registry: ModelRegistry,
    model_events: Callable[[ModelRegistry], Coroutine[Any, Any, None]] | None = None,
) -> FastAPI:
    """Build the app. ``model_events`` (optional) listens for published models until cancelled."""
    metrics = Metrics()
    state = ApiState(
        settings=settings,
        registry=registry,
        batcher=MicroBatcher(
            lambda: registry.current,
            max_texts=settings.batch_max_texts,
            max_wait_s=settings.batch_max_wait_ms / 1000,
            on_batch=metrics.batch_texts.observe,
        ),
        metrics=metrics,
        api_keys=ApiKeys(settings.api_keys_file)
        if settings.api_keys_file and settings.auth_mode == "api_keys"
        else None,
    )

    async def initial_load() -> None:
        try:
            model = await registry.load()
            metrics.serving(model.version)
        except ModelNotFound as exc:
            log.warning("not ready: %s", exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.batcher.start()
        tasks = [asyncio.create_task(initial_load())]
        if model_events is not None:
            tasks.append(asyncio.create_task(model_events(registry)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await state.batcher.stop()

    app = FastAPI(
        title="synthner NER API",
        version="1",
        description="Clinical named-entity recognition. Offsets are Unicode code-point indices into the sent text.",
        lifespan=lifespan,
        responses={status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 413, 422, 503)},
    )
    app.state.api = state
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _declare_limits_and_auth(default_openapi(), settings)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"])
    app.middleware("http")(_request_context)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.include_router(router)
    return app
