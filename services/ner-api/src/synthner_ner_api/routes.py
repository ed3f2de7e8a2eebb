"""The endpoints: NER on one text or a batch, the model being served and its hot swap, probes, metrics, the page.

Handlers check the configured limits (413), take the current model through the micro-batcher and shape the answer;
the work is the registry's and the predictor's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from synthner_ner_api.batcher import QueueFull
from synthner_ner_api.dependencies import Admin, RequestId, State, User
from synthner_ner_api.errors import ApiError
from synthner_ner_api.models import LoadedModel, ModelLoadFailed, ModelNotFound, SpanPrediction, UnknownModelVersion
from synthner_ner_api.page import PAGE_HTML
from synthner_ner_api.schemas import (
    BatchItemOut,
    EntityOut,
    ModelInfo,
    NerBatchRequest,
    NerBatchResponse,
    NerRequest,
    NerResponse,
    PinReleaseRequest,
    PinReleaseResult,
    ReloadRequest,
    RollbackPin,
    RollbackRequest,
    RollbackResult,
    SwapResult,
)
from synthner_ner_api.state import ApiState
from synthner_shared.contracts import ModelPinReleaseRequested, ModelRollbackRequested
from synthner_shared.messaging import PublishError

router = APIRouter()


def _entities(text: str, spans: Sequence[SpanPrediction]) -> list[EntityOut]:
    return [
        EntityOut(start=s.start, end=s.end, label=s.label, text=text[s.start : s.end], score=round(s.score, 4))
        for s in spans
    ]


def check_length(state: ApiState, text: str) -> None:
    limit = state.settings.max_text_chars
    if len(text) > limit:
        raise ApiError(413, f"text of {len(text)} characters is over the limit of {limit}")


async def annotate(state: ApiState, texts: Sequence[str]) -> tuple[str, list[list[SpanPrediction]]]:
    if state.registry.current is None:
        raise ApiError(503, "no model is loaded yet", retry_after_s=5)
    try:
        return await state.batcher.predict(texts)
    except QueueFull:
        raise ApiError(503, "the service is busy: too many texts are waiting for the model", retry_after_s=1) from None


@router.post("/v1/ner", response_model=NerResponse, summary="Entities in one text")
async def ner(body: NerRequest, state: State, request_id: RequestId, _: User) -> NerResponse:
    check_length(state, body.text)
    version, (spans,) = await annotate(state, [body.text])
    return NerResponse(entities=_entities(body.text, spans), model_version=version, request_id=request_id)


@router.post("/v1/ner/batch", response_model=NerBatchResponse, summary="Entities in many texts, one model version")
async def ner_batch(
    body: NerBatchRequest, state: State, request_id: RequestId, user: User, request: Request
) -> NerBatchResponse:
    if len(body.items) > state.settings.max_batch_items:
        raise ApiError(413, f"{len(body.items)} items is over the limit of {state.settings.max_batch_items} per batch")
    for item in body.items:
        check_length(state, item.text)
    if request.app.state.limiter is not None:  # the gate took one token; each further text costs one more
        request.app.state.limiter.charge(user.name, len(body.items) - 1)
    version, results = await annotate(state, [item.text for item in body.items])
    return NerBatchResponse(
        results=[
            BatchItemOut(id=item.id, entities=_entities(item.text, spans))
            for item, spans in zip(body.items, results, strict=True)
        ],
        model_version=version,
        request_id=request_id,
    )


@router.get("/v1/model", response_model=ModelInfo, summary="The model being served")
async def get_model(state: State, _: User) -> ModelInfo:
    model, previous = state.registry.current, state.registry.previous
    if model is None:
        raise ApiError(503, "no model is loaded yet")
    pin = state.registry.store_pointer().pinned
    return ModelInfo(
        version=model.version,
        labels=model.labels,
        base_model=model.base_model,
        metrics=model.metrics,
        previous_version=previous.version if previous else None,
        serving=model.serving,
        rollback_pin=RollbackPin(version=pin.version, by=pin.by, reason=pin.reason, at=pin.at) if pin else None,
    )


async def _swapped(state: ApiState, action: Callable[[], Awaitable[LoadedModel]]) -> SwapResult:
    try:
        model = await action()
    except UnknownModelVersion as exc:
        raise ApiError(404, str(exc)) from None
    except (ModelNotFound, ModelLoadFailed) as exc:
        raise ApiError(409, str(exc)) from None
    previous = state.registry.previous
    return SwapResult(version=model.version, previous_version=previous.version if previous else None)


@router.post("/v1/admin/reload", response_model=SwapResult, summary="Load a version (default: newest) and swap")
async def reload(body: ReloadRequest, state: State, _: Admin) -> SwapResult:
    return await _swapped(state, lambda: state.registry.load(body.version))


ROLLBACK_WAIT_S = 30.0
"""How long a rollback waits for this replica to serve the version before answering 202 (the event still comes)."""


@router.post(
    "/v1/admin/rollback",
    response_model=RollbackResult,
    summary="Roll every replica back to a published version (kept in the model store until released)",
    responses={202: {"model": RollbackResult, "description": "Requested; this replica does not serve it yet."}},
)
async def rollback(
    state: State, admin: Admin, response: Response, body: RollbackRequest | None = None
) -> RollbackResult:
    """Ask the trainer (the model store's writer) to pin ``version`` as current; every replica follows its
    ``ModelRolledBack`` event, and replicas started later read the pin from the store."""
    registry = state.registry
    version = body.version if body is not None and body.version else None
    if version is None:
        if registry.previous is None:
            raise ApiError(409, "no previous model version to roll back to: name the version")
        version = registry.previous.version
    if version not in registry.servable_versions():
        raise ApiError(404, f"unknown or unpublished model version {version!r}")
    if state.request_rollback is None:
        raise ApiError(409, "a cluster-wide rollback needs the broker; this replica does not listen for model events")
    request = ModelRollbackRequested(
        correlation_id=f"rollback-{uuid.uuid4().hex[:12]}",
        producer=f"ner-api-{state.settings.instance}",
        model_version=version,
        requested_by=admin.name,
        reason=body.reason if body is not None else "",
    )
    try:
        await state.request_rollback(request)
    except PublishError as exc:
        raise ApiError(503, f"the rollback request was not sent: {exc}", retry_after_s=5) from None
    try:
        async with asyncio.timeout(ROLLBACK_WAIT_S):
            await registry.wait_for_version(version)
        served_here = True
    except TimeoutError:
        served_here = False
        response.status_code = 202
    return RollbackResult(
        version=version, requested_by=admin.name, request_id=str(request.message_id), served_here=served_here
    )


@router.post(
    "/v1/admin/rollback/release",
    response_model=PinReleaseResult,
    status_code=202,
    summary="Release the rollback's pin in the model store: the next published version is served again",
)
async def release_rollback(state: State, admin: Admin, body: PinReleaseRequest | None = None) -> PinReleaseResult:
    """Ask the trainer to release the pin; the version served stays until the trainer publishes a newer one."""
    if state.request_rollback is None:
        raise ApiError(409, "releasing a rollback needs the broker; this replica does not listen for model events")
    request = ModelPinReleaseRequested(
        correlation_id=f"release-{uuid.uuid4().hex[:12]}",
        producer=f"ner-api-{state.settings.instance}",
        requested_by=admin.name,
        reason=body.reason if body is not None else "",
    )
    try:
        await state.request_rollback(request)
    except PublishError as exc:
        raise ApiError(503, f"the release request was not sent: {exc}", retry_after_s=5) from None
    return PinReleaseResult(requested_by=admin.name, request_id=str(request.message_id))


@router.get("/livez", include_in_schema=False)
async def livez() -> dict[str, Any]:
    return {"live": True}


@router.get("/readyz", include_in_schema=False)
async def readyz(state: State) -> JSONResponse:
    model, fallback = state.registry.current, state.registry.fallback
    body: dict[str, Any] = {"ready": model is not None, "model_version": model.version if model else None}
    if fallback is not None:  # serving, but not the version the store names: ops must look
        body["fallback"] = {"wanted": fallback.wanted, "reason": fallback.reason}
    return JSONResponse(body, status_code=200 if model is not None else 503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(state: State) -> Response:
    model = state.registry.current
    if model is not None:  # read at scrape time: a swap by a model event or an admin call shows at once
        state.metrics.serving(model.version, state.registry.fallback)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE_HTML)
