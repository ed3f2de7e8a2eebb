"""HTTP request and response models, split by direction."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class NerRequest(_In):
    text: str = Field(min_length=1, description="The note; any Unicode. Offsets in the answer index this string.")


class BatchItemIn(_In):
    id: str = Field(min_length=1, max_length=200, description="Caller's id, returned with the item's result.")
    text: str = Field(min_length=1)


class NerBatchRequest(_In):
    items: list[BatchItemIn] = Field(min_length=1, description="Texts to annotate, answered by one model version.")


class EntityOut(_Out):
    start: int = Field(description="Offset of the first character (Python str index / Unicode code point).")
    end: int = Field(description="Offset one past the last character.")
    label: str
    text: str = Field(description="text[start:end] of the request.")
    score: float = Field(ge=0.0, le=1.0)


class NerResponse(_Out):
    entities: list[EntityOut]
    model_version: str = Field(description="The model version that answered.")
    request_id: str


class BatchItemOut(_Out):
    id: str
    entities: list[EntityOut]


class NerBatchResponse(_Out):
    results: list[BatchItemOut]
    model_version: str
    request_id: str


class RollbackPin(_Out):
    version: str = Field(description="The version an operator rolled the cluster back to.")
    by: str
    reason: str
    at: datetime


class ModelInfo(_Out):
    version: str
    labels: list[str]
    base_model: str | None
    metrics: dict[str, object] = Field(description="The model's metrics.json as the trainer wrote it.")
    previous_version: str | None = Field(description="The version a rollback returns to, if any.")
    serving: dict[str, object] = Field(
        default_factory=dict, description="How it is served: precision (fp32/int8) and the int8 gate's F1s."
    )
    rollback_pin: RollbackPin | None = Field(
        default=None, description="The model store's rollback pin: newer versions are not served until it is released."
    )


class ReloadRequest(_In):
    version: str | None = Field(default=None, description="Version folder to load; None = the newest in the store.")


class SwapResult(_Out):
    version: str
    previous_version: str | None


class RollbackRequest(_In):
    version: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Published version every replica is to serve; None = the version this replica served before.",
    )
    reason: str = Field(default="", max_length=500, description="Why (kept in the model store; no note text).")


class PinReleaseRequest(_In):
    reason: str = Field(default="", max_length=500, description="Why (logged by the trainer; no note text).")


class PinReleaseResult(_Out):
    requested_by: str
    request_id: str = Field(description="Message id of the release request sent to the trainer.")


class RollbackResult(_Out):
    version: str = Field(description="The version the cluster was rolled back to.")
    requested_by: str = Field(description="The admin key's (or the proxy's user) name, kept in the model store.")
    request_id: str = Field(description="Message id of the rollback request sent to the trainer.")
    served_here: bool = Field(
        description="Whether this replica serves the version already (200); if not yet (202), it follows the event."
    )


class ErrorOut(_Out):
    error: str = Field(description="What went wrong, without echoing request text.")
    request_id: str | None = None
