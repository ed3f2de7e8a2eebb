"""The common envelope every message on the broker carries."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


def _utc_now() -> datetime:
    return datetime.now(UTC)


def content_id(text: str) -> str:
    """The content hash used as ``note_id``: SHA-256 of the UTF-8 text, lower-case hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Contract(BaseModel):
    """Base of every nested contract model: unknown fields are an error, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Envelope(Contract):
    """Fields shared by every message. Subclasses pin ``type`` and ``schema_version`` with ``Literal`` types."""

    routing_key: ClassVar[str]

    type: str = Field(description="Message type name, e.g. 'NoteGenerated'; selects the model that parses the body.")
    schema_version: int = Field(description="Version of this message type's schema; bumped on incompatible change.")
    message_id: UUID = Field(
        default_factory=uuid4, description="Unique id of this message; consumers de-duplicate on it."
    )
    correlation_id: str = Field(
        min_length=1, max_length=200, description="Id of the job this message belongs to, carried through all stages."
    )
    created_at: AwareDatetime = Field(default_factory=_utc_now, description="When the message was created (UTC).")
    producer: str = Field(min_length=1, max_length=200, description="Service (and instance) that produced the message.")
