"""Broker connection and consumer settings, read from the environment and validated at start-up."""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"

HANDLER_DEADLINES_S: dict[str, float] = {
    # Parts of up to part_size (16) notes, each one or two LLM calls of up to 120 s with retries, sharing the LLM
    # concurrency with the other parts in the prefetch window: minutes usually, 25 minutes at worst.
    "generator": 1_500.0,
    # An LLM annotator (chunks, retries of up to 120 s each, an ensemble's several endpoints) or a lexicon.
    "annotator": 1_500.0,
    # Stores a document or a request (SQLite, fsync); the trainings themselves run outside the delivery.
    "trainer": 300.0,
    # Loads a published model for the hot swap.
    "ner-api": 600.0,
    "failures": 60.0,
    "job-progress": 60.0,
    "quarantine": 60.0,
}
"""Default handler deadline of each queue role: how long the runner lets a handler work on one delivery (counted from
the delivery) before it counts the run as a failure (retry with back-off, then the DLQ)."""

CONSUMER_TIMEOUTS_S: dict[str, float] = {
    "generator": 1_800.0,
    "annotator": 1_800.0,
    "trainer": 600.0,
    "ner-api": 900.0,
    "failures": 300.0,
    "job-progress": 300.0,
    "quarantine": 300.0,
}
"""Default broker consumer timeout of each queue role (``x-consumer-timeout`` on the consumer): how long the broker
lets a delivery stay unacknowledged before it takes the message back. It must leave room for the handler deadline plus
the publishing of the outputs (``output_retry_s``) and of a retry or dead letter (``publish_timeout_s``)."""

OTHER_ROLES_DEADLINE_S = 60.0
OTHER_ROLES_CONSUMER_TIMEOUT_S = 300.0
"""Deadline and consumer timeout of a queue role not named above (a tool's own queue, such as the local pipeline's
observer): short bookkeeping handlers, as for ``failures``."""


class BrokerSettings(BaseSettings):
    """How a service talks to RabbitMQ.

    ``AMQP_URL`` (or ``SYNTHNER_BROKER_URL``) gives the broker; every other field reads ``SYNTHNER_BROKER_<FIELD>``.
    """

    model_config = SettingsConfigDict(env_prefix="SYNTHNER_BROKER_", extra="ignore", frozen=True)

    url: SecretStr = Field(
        default=SecretStr(DEFAULT_AMQP_URL),
        validation_alias=AliasChoices("AMQP_URL", "SYNTHNER_BROKER_URL", "url"),
        description="amqp:// or amqps:// URL with credentials and virtual host.",
    )
    environment: Literal["local", "production"] = Field(
        default="local",
        validation_alias=AliasChoices("SYNTHNER_ENVIRONMENT", "environment"),
        description="'production' refuses the default guest credentials.",
    )
    namespace: str = Field(
        default="synthner",
        pattern=r"^[a-z][a-z0-9-]{0,40}$",
        description="Prefix of the exchange and queue names; tests use a unique one.",
    )
    prefetch: int = Field(default=8, ge=1, le=1000, description="Unacked messages in flight per consumer.")
    delivery_limit: int = Field(
        default=5, ge=1, le=1000, description="Deliveries after which the broker dead-letters a message."
    )
    retry_delays_ms: tuple[int, ...] = Field(
        default=(1_000, 10_000, 60_000),
        min_length=1,
        max_length=10,
        description="Back-off before retry n (the last value repeats); each value is a retry queue tier.",
    )
    max_retries: int = Field(default=5, ge=0, le=100, description="Retries of a retryable failure before the DLQ.")
    publish_timeout_s: float = Field(default=30.0, gt=0, description="How long to wait for a publisher confirm.")
    output_retry_s: float = Field(
        default=120.0,
        ge=0,
        description="How long a consumer keeps retrying the publish of a handled message's outputs while the broker "
        "is unavailable, before handing the input back (each hand-back counts toward the delivery limit).",
    )
    connect_timeout_s: float = Field(default=60.0, gt=0, description="How long to keep trying the first connection.")
    reconnect_interval_s: float = Field(default=2.0, gt=0, description="Pause between reconnection attempts.")
    shutdown_grace_s: float = Field(
        default=25.0, gt=0, description="On SIGTERM, how long in-flight work may take before it is requeued."
    )
    idempotency_cache_size: int = Field(
        default=100_000, ge=0, description="Processed message keys remembered per consumer (0 disables)."
    )
    handler_deadlines_s: dict[str, float] = Field(
        default_factory=dict,
        description='Per queue role (JSON object, e.g. {"generator": 900}): how long a handler may work on one '
        "delivery before the run counts as a failure; roles not named keep their default (HANDLER_DEADLINES_S).",
    )
    consumer_timeouts_s: dict[str, float] = Field(
        default_factory=dict,
        description="Per queue role (JSON object): the broker's consumer timeout, sent as x-consumer-timeout with "
        "each subscription; roles not named keep their default (CONSUMER_TIMEOUTS_S).",
    )
    max_message_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1_024,
        description="A delivered body larger than this is dead-lettered without being parsed (a note, its entities "
        "and a model event are far smaller).",
    )

    @field_validator("url")
    @classmethod
    def _amqp_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"amqp", "amqps"} or not parts.hostname:
            raise ValueError("must be an amqp:// or amqps:// URL with a host")
        return value

    @field_validator("retry_delays_ms")
    @classmethod
    def _positive_delays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(delay <= 0 for delay in value):
            raise ValueError("retry delays must be positive milliseconds")
        return value

    @field_validator("handler_deadlines_s", "consumer_timeouts_s")
    @classmethod
    def _known_roles_positive_seconds(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(HANDLER_DEADLINES_S))
        if unknown:
            raise ValueError(f"unknown queue roles {unknown}; the roles are {sorted(HANDLER_DEADLINES_S)}")
        if any(seconds <= 0 for seconds in value.values()):
            raise ValueError("seconds must be positive")
        return value

    @model_validator(mode="after")
    def _deadlines_below_consumer_timeouts(self) -> Self:
        """A handler that may still run (or publish) when the broker's consumer timeout takes its message back would
        run twice at once: refuse such a configuration at start-up."""
        for role in (*HANDLER_DEADLINES_S, "any other role"):
            deadline, timeout = self.handler_deadline_s(role), self.consumer_timeout_s(role)
            needed = deadline + self.output_retry_s + self.publish_timeout_s
            if needed >= timeout:
                raise ValueError(
                    f"role {role!r}: handler deadline {deadline:g}s + output_retry_s {self.output_retry_s:g}s + "
                    f"publish_timeout_s {self.publish_timeout_s:g}s = {needed:g}s is not below its consumer timeout "
                    f"{timeout:g}s; lower the deadline or raise consumer_timeouts_s"
                )
        return self

    @model_validator(mode="after")
    def _no_default_credentials_in_production(self) -> Self:
        parts = urlsplit(self.url.get_secret_value())
        if self.environment == "production" and (parts.username in (None, "", "guest") or parts.password == "guest"):  # noqa: S105
            raise ValueError("production refuses the broker's default or missing credentials; set AMQP_URL")
        return self

    @property
    def redacted_url(self) -> str:
        """The URL with the password replaced, for logs."""
        parts = urlsplit(self.url.get_secret_value())
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        if parts.username:
            netloc = f"{parts.username}:***@{netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def handler_deadline_s(self, role: str) -> float:
        """How long a handler of ``role`` may work on one delivery (the override, else the role's default)."""
        return self.handler_deadlines_s.get(role, HANDLER_DEADLINES_S.get(role, OTHER_ROLES_DEADLINE_S))

    def consumer_timeout_s(self, role: str) -> float:
        """The broker's consumer timeout for ``role``'s subscriptions (the override, else the role's default)."""
        return self.consumer_timeouts_s.get(role, CONSUMER_TIMEOUTS_S.get(role, OTHER_ROLES_CONSUMER_TIMEOUT_S))

    def retry_delay_ms(self, retry: int) -> int:
        """Back-off before retry number ``retry`` (1-based)."""
        return self.retry_delays_ms[min(retry, len(self.retry_delays_ms)) - 1]
