"""Errors of the messaging layer, and the two a handler raises to choose what happens to its message."""

from __future__ import annotations


class HandlerError(Exception):
    """Base of the errors a handler raises on purpose. The message must not contain note text (it reaches logs)."""


class RetryableError(HandlerError):
    """A transient failure (LLM 429/5xx, time-out): the message is retried after a back-off, then dead-lettered."""


class DeadlineExceeded(HandlerError):
    """Raised by the runner (not a handler) when a handler overran its role's deadline: a failure like any other (retry
    with back-off, then the DLQ), counted by the runner since RabbitMQ 4 counts neither a consumer timeout nor a
    requeue toward the delivery limit."""


class PoisonMessageError(HandlerError):
    """The message can never be handled (bad content): it goes straight to the dead-letter queue with the reason."""


class PublishError(Exception):
    """A message was not confirmed by the broker; the caller must treat it as not sent."""


class BrokerUnavailable(PublishError):
    """No connection to the broker (it is down or unreachable, or the confirm timed out)."""


class BrokerRefused(PublishError):
    """The broker answered but did not take the message (nack, or no queue bound to its routing key)."""
