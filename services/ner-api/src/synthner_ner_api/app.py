"""The NER API's composition root: :func:`create_app` builds the FastAPI app, :func:`build` the served process.

The app is laid out by job: :mod:`~synthner_ner_api.routes` (the endpoints), :mod:`~synthner_ner_api.dependencies`
(state, authentication), :mod:`~synthner_ner_api.middleware` (the gate: authentication from the headers
before the body is read, rate limits of :mod:`~synthner_ner_api.ratelimit`, the time limit and cancellation of NER
requests; the body limit, request id, security headers, metrics, the log line), :mod:`~synthner_ner_api.errors` (JSON
errors that never echo request text), :mod:`~synthner_ner_api.openapi` (the deployment's limits and auth scheme in
the document) and :mod:`~synthner_ner_api.metrics`. Request text and entity
strings are never logged. ``python -m synthner_ner_api`` runs what :func:`build` returns through
:func:`synthner_shared.app.run_service` (logging, exit codes, SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client.registry import Collector

from synthner_ner_api.auth import ApiKeys, KeyFileError
from synthner_ner_api.batcher import MicroBatcher
from synthner_ner_api.errors import add_error_handlers
from synthner_ner_api.events import ModelEvents
from synthner_ner_api.loading import ServingLoader
from synthner_ner_api.metrics import Metrics
from synthner_ner_api.middleware import BodyLimit, Gate, RequestContext
from synthner_ner_api.models import ModelLoadFailed, ModelNotFound, ModelRegistry
from synthner_ner_api.openapi import use_deployment_openapi
from synthner_ner_api.ratelimit import TokenBuckets
from synthner_ner_api.routes import router
from synthner_ner_api.schemas import ErrorOut
from synthner_ner_api.server import ApiServer
from synthner_ner_api.settings import NerApiSettings
from synthner_ner_api.state import ApiState, RequestRollback
from synthner_ner_api.tracing import TraceRequests
from synthner_shared.messaging import BrokerSettings

log = logging.getLogger(__name__)

ModelEventListener = Callable[[ModelRegistry], Coroutine[Any, Any, None]]
"""Listens for published models (and swaps them in) until cancelled."""

CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (KeyFileError,)
"""Errors of building that mean the configuration is wrong (exit code 2)."""


def create_app(
    settings: NerApiSettings,
    registry: ModelRegistry,
    model_events: ModelEventListener | None = None,
    request_rollback: RequestRollback | None = None,
    event_metrics: Collector | None = None,
) -> FastAPI:
    """Build the app. ``model_events`` (optional) listens for published models until cancelled; ``request_rollback``
    (optional) sends ``/v1/admin/rollback``'s request to the trainer; ``event_metrics`` (optional) joins ``/metrics``
    (the model-event consumer's counters)."""
    metrics = Metrics()
    if event_metrics is not None:
        metrics.registry.register(event_metrics)
    state = ApiState(
        settings=settings,
        registry=registry,
        batcher=MicroBatcher(
            lambda: registry.current,
            max_texts=settings.batch_max_texts,
            max_wait_s=settings.batch_max_wait_ms / 1000,
            on_batch=metrics.batch_texts.observe,
            max_queued_texts=settings.queue_max_texts,
            on_dropped=metrics.dropped_texts.inc,
        ),
        metrics=metrics,
        api_keys=ApiKeys(settings.api_keys_file, min_key_bits=settings.min_key_bits)
        if settings.api_keys_file and settings.auth_mode == "api_keys"
        else None,
        request_rollback=request_rollback,
    )

    async def initial_load() -> None:
        try:
            await registry.load()
        except (ModelNotFound, ModelLoadFailed) as exc:
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
        responses={status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 413, 422, 429, 503)},
    )
    app.state.api = state
    use_deployment_openapi(app, settings)
    metrics.queued_texts.set_function(lambda: state.batcher.queued_texts)
    limiter = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst) if settings.rate_limit_per_s else None
    app.state.limiter = limiter  # the batch endpoint charges a batch's other texts to its caller
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(
        Gate,
        state=state,
        limiter=limiter,
        timeout_s=settings.request_timeout_s,
        refusal_delay_s=settings.rate_limit_delay_s,
    )
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"])
    app.add_middleware(RequestContext)  # every answer, refusals included, gets an id, headers, a log line
    app.add_middleware(TraceRequests)  # outermost: a span per request when tracing is on
    add_error_handlers(app)
    app.include_router(router)
    return app


def listens_for_models(settings: NerApiSettings) -> bool:
    """Whether the API consumes ``ModelPublished`` events: only where it serves a store."""
    return settings.listen_for_models and settings.model_store is not None


def settings_from_environment() -> tuple[NerApiSettings, BrokerSettings | None]:
    """The API's settings, and the broker's only where the API listens for published models."""
    settings = NerApiSettings()
    return settings, BrokerSettings() if listens_for_models(settings) else None


async def build(
    settings: NerApiSettings, broker: BrokerSettings | None = None, registry: ModelRegistry | None = None
) -> ApiServer:
    """The app on uvicorn at the configured host and port. Models load from the store (or the fixed folder) with the
    int8 gate unless ``registry`` is given; published models are swapped in when ``broker`` is given and the API
    serves a store."""
    if registry is None:
        registry = ModelRegistry(
            ServingLoader(settings),
            store=settings.model_store,
            fixed=settings.model_dir,
            previous_grace_s=settings.previous_model_grace_s,
        )
    if broker is None or not listens_for_models(settings):
        return ApiServer(create_app(settings, registry), settings.host, settings.port)
    events = ModelEvents(broker, settings.instance)
    app = create_app(
        settings, registry, events.listen, request_rollback=events.request_rollback, event_metrics=events.metrics()
    )
    return ApiServer(app, settings.host, settings.port)
