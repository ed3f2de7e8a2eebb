"""Lookup of message classes by ``(type, schema_version)`` and decoding of message bodies."""

from __future__ import annotations

import json
import typing
from collections.abc import Collection, Iterable, Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from synthner_shared.contracts.envelope import Envelope
from synthner_shared.contracts.messages import (
    AdaptationRequested,
    AnnotationFailed,
    DocumentAnnotated,
    GenerationFailed,
    GenerationProgress,
    GenerationRequested,
    GeneratorAdapted,
    ModelPinReleaseRequested,
    ModelPublished,
    ModelRollbackRequested,
    ModelRolledBack,
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
    ModelRollbackRequested,
    ModelRolledBack,
    ModelPinReleaseRequested,
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
_KNOWN_TYPES = ", ".join(sorted({name for name, _ in REGISTRY}))


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
    # The type name is the sender's: it is not repeated (it may be anything, of any length), only its size.
    raise UnknownMessageType(f"unknown message type (a name of {len(type_name)} characters; known: {_KNOWN_TYPES})")


MAX_PROBLEMS = 5
"""Validation problems named in one description; the rest are counted."""
UNKNOWN_KEY = "<unknown key>"
_ECHOING_CONTEXT = ("error", "tag")
"""Context items of pydantic error messages that may quote the input (a parse error's detail, a union tag)."""


@cache
def field_names(model: type[BaseModel]) -> frozenset[str]:
    """Every field name and alias of ``model`` and of the models nested in its fields: the vocabulary a location in
    a validation error may use. A location part outside it came from the input (an unknown key, a dict key)."""
    names: set[str] = set()
    pending: list[Any] = [model]
    seen: set[type[BaseModel]] = set()
    while pending:
        item = pending.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            if item in seen:
                continue
            seen.add(item)
            for name, info in item.model_fields.items():
                names.add(name)
                names.update(a for a in (info.alias, info.validation_alias) if isinstance(a, str))
                pending.append(info.annotation)
        else:
            pending.extend(typing.get_args(item))
    return frozenset(names)


def _safe_message(item: Mapping[str, Any]) -> str:
    message = str(item.get("msg", "invalid"))
    if item.get("type") in {"value_error", "assertion_error"}:
        return message  # our own validators' messages, written not to quote input
    context = item.get("ctx") or {}
    for key in _ECHOING_CONTEXT:
        if str(context.get(key, "")):
            message = message.replace(str(context[key]), "…")
    return message.removesuffix(", …").removesuffix(": …")


def describe_problems(errors: Iterable[Mapping[str, Any]], fields: Collection[str] | None = None) -> str:
    """Validation problems as ``location: kind of error``, never with an input value.

    A location part that is not in ``fields`` (the schema's names, see :func:`field_names`) is shown as
    ``<unknown key>``: an unknown field's name or a dict key is the sender's text. Without ``fields``, only the names
    of unknown fields are hidden. Each problem ends with pydantic's error type in brackets. At most
    :data:`MAX_PROBLEMS` are named.
    """
    parts: list[str] = []
    items = list(errors)
    for item in items[:MAX_PROBLEMS]:
        location = list(item.get("loc", ()))
        if item.get("type") == "extra_forbidden" and location:
            location[-1] = UNKNOWN_KEY
        shown = [
            str(part) if isinstance(part, int) or fields is None or part in fields or part == "[key]" else UNKNOWN_KEY
            for part in location
        ]
        parts.append(f"{'.'.join(shown) or '<root>'}: {_safe_message(item)} [{item.get('type', 'invalid')}]")
    if len(items) > MAX_PROBLEMS:
        parts.append(f"and {len(items) - MAX_PROBLEMS} more")
    return "; ".join(parts)


def describe_validation_error(error: ValidationError, fields: Collection[str] | None = None) -> str:
    """A one-line summary of a validation error that names fields and rules but never echoes input values
    (see :func:`describe_problems`)."""
    problems = error.errors(include_input=False, include_url=False)
    return f"{error.title}: " + describe_problems(problems, fields)


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
        raise MessageDecodeError(describe_validation_error(exc, field_names(cls))) from None
