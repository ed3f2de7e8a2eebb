"""Broker connection and consumer settings, read from the environment and validated at start-up."""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


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

    def retry_delay_ms(self, retry: int) -> int:
        """Back-off before retry number ``retry`` (1-based)."""
        return self.retry_delays_ms[min(retry, len(self.retry_delays_ms)) - 1]
