"""The annotator's errors: a small hierarchy, mapped once (in :mod:`synthner_annotator.handler`) to what happens to
the message. Every message is safe to log: it names counts, labels, endpoints and rules, never note text."""

from __future__ import annotations


class AnnotatorError(Exception):
    """Base of the annotator's own errors. ``attempts``: calls made before giving up (1 when none was made)."""

    def __init__(self, reason: str, attempts: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class PermanentAnnotationError(AnnotatorError):
    """This note will never be annotated by this configuration: report ``AnnotationFailed``."""


class TransientAnnotationError(AnnotatorError):
    """The backend is unavailable right now (429, 5xx, time-out, connection): retry the message later."""


class EgressRefused(PermanentAnnotationError):
    """The note may not go to the configured endpoint (external endpoint; note not synthetic or not leak-checked)."""


class MalformedReply(PermanentAnnotationError):
    """The LLM's reply could not be parsed (after the configured number of retries)."""


class NoteRejected(PermanentAnnotationError):
    """The note itself is unusable (e.g. larger than the configured limit)."""


class ConfigurationError(ValueError):
    """The annotator's configuration is inconsistent (unknown prompt, label without definition, ...)."""
