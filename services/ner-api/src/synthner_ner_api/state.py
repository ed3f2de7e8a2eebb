"""What every request handler needs, built once by the app factory and held on ``app.state.api``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

from synthner_ner_api.auth import ApiKeys
from synthner_ner_api.batcher import MicroBatcher
from synthner_ner_api.metrics import Metrics
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.settings import NerApiSettings
from synthner_shared.contracts import ModelPinReleaseRequested, ModelRollbackRequested

RequestRollback = Callable[[ModelRollbackRequested | ModelPinReleaseRequested], Awaitable[None]]
"""Sends a rollback (or pin release) request to the trainer over the broker (publisher confirm)."""


@dataclass
class ApiState:
    settings: NerApiSettings
    registry: ModelRegistry
    batcher: MicroBatcher
    metrics: Metrics
    api_keys: ApiKeys | None
    request_rollback: RequestRollback | None = None
    """None where the replica has no broker (it serves a fixed folder or does not listen for model events)."""


def api_state(request: Request) -> ApiState:
    """The app's state (a FastAPI dependency, and the error handlers' and middleware's way to it)."""
    state: ApiState = request.app.state.api
    return state
