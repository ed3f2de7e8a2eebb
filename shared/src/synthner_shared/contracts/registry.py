"""Lookup of message classes by ``(type, schema_version)`` and decoding of message bodies."""

from __future__ import annotations

import json

from pydantic import ValidationError

from synthner_shared.contracts.envelope import Envelope
from synthner_shared.contracts.messages import (
    AdaptationRequested,
    AnnotationFailed,
    DocumentAnnotated,
    GenerationFailed,
    GenerationProgress,
    GenerationRequested,
    GeneratorAdapted,
    ModelPublished,
    NoteGenerated,
    NoteQuarantined,
    TrainingRequested,
)

MESSAGE_CLASSES: tuple[type[Envelope], ...] = (
    GenerationRequested,
    NoteGenerated,
    NoteQuarantined,
    GenerationProgress,
    GenerationFailed,
    DocumentAnnotated,
    AnnotationFailed,
    TrainingRequested,
    ModelPublished,
    AdaptationRequested,
    GeneratorAdapted,
)


def _key(cls: type[Envelope]) -> tuple[str, int]:
    fields = cls.model_fields
    type_name, version = fields["type"].default, fields["schema_version"].default
    if not isinstance(type_name, str) or not isinstance(version, int):
        raise TypeError(f"{cls.__name__} must pin 'type' and 'schema_version' with defaults")
    return type_name, version


REGISTRY: dict[tuple[str, int], type[Envelope]] = {_key(cls): cls for cls in MESSAGE_CLASSES}


class MessageDecodeError(ValueError):
    """A body that is not a valid message of a known type and version. The reason never contains field values."""


class UnknownMessageType(MessageDecodeError):
    pass


class UnsupportedSchemaVersion(MessageDecodeError):
    pass


def message_class(type_name: str, schema_version: int) -> type[Envelope]:
    """The class for a type and version, or :class:`UnknownMessageType` / :class:`UnsupportedSchemaVersion`."""
    cls = REGISTRY.get((type_name, schema_version))
    if cls is not None:
        return cls
    known = sorted(version for name, version in REGISTRY if name == type_name)
    if known:
        raise UnsupportedSchemaVersion(
            f"{type_name} schema_version {schema_version} is not supported (supported: {known})"
        )
    raise UnknownMessageType(f"unknown message type {type_name!r}")


def describe_validation_error(error: ValidationError) -> str:
    """A one-line summary of a validation error that names fields and rules but never echoes input values."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "<message>"
        parts.append(f"{location}: {item['msg']}")
    return f"{error.title}: " + "; ".join(parts)


def decode_message(body: bytes, accepted: tuple[type[Envelope], ...] | None = None) -> Envelope:
    """Parse a message body into its class, checked against ``accepted`` when given.

    Raises :class:`MessageDecodeError` (or a subclass) with a reason that is safe to log.
    """
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageDecodeError(
            f"body is not JSON: {type(exc).__name__} at position {getattr(exc, 'pos', '?')}"
        ) from None
    if not isinstance(raw, dict):
        raise MessageDecodeError(f"body is a JSON {type(raw).__name__}, not an object")
    type_name, version = raw.get("type"), raw.get("schema_version")
    if not isinstance(type_name, str) or not isinstance(version, int) or isinstance(version, bool):
        raise MessageDecodeError("body lacks a string 'type' and an integer 'schema_version'")
    cls = message_class(type_name, version)
    if accepted is not None and cls not in accepted:
        names = ", ".join(sorted(c.__name__ for c in accepted))
        raise UnknownMessageType(f"{type_name} v{version} is not handled by this consumer (it accepts {names})")
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise MessageDecodeError(describe_validation_error(exc)) from None
