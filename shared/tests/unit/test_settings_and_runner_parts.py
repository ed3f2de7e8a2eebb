"""Broker settings from the environment, and the runner's pure parts (error descriptions, processed-key memory)."""

from __future__ import annotations

import json
import logging
import os

import pytest
from pydantic import ValidationError

from synthner_shared.contracts import MessageDecodeError
from synthner_shared.logs import configure_logging
from synthner_shared.messaging import BrokerSettings, RetryableError
from synthner_shared.messaging.consumer import (
    MAX_REASON_CHARS,
    ProcessedKeys,
    bounded_reason,
    describe_error,
    safe_id,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests set the environment themselves; the caller's broker settings must not leak in."""
    for key in list(os.environ):
        if key == "AMQP_URL" or key.startswith("SYNTHNER_"):
            monkeypatch.delenv(key)


def test_settings_read_amqp_url_and_prefixed_fields_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://svc:s3cret@broker.internal:5672/synthner")
    monkeypatch.setenv("SYNTHNER_BROKER_PREFETCH", "16")
    monkeypatch.setenv("SYNTHNER_BROKER_RETRY_DELAYS_MS", "[100, 2000]")
    settings = BrokerSettings()
    assert settings.prefetch == 16
    assert settings.retry_delays_ms == (100, 2000)
    assert settings.retry_delay_ms(1) == 100
    assert settings.retry_delay_ms(7) == 2000
    assert settings.redacted_url == "amqp://svc:***@broker.internal:5672/synthner"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    "env",
    [
        {"AMQP_URL": "http://broker:5672/"},
        {"SYNTHNER_BROKER_PREFETCH": "0"},
        {"SYNTHNER_BROKER_RETRY_DELAYS_MS": "[0]"},
        {"SYNTHNER_ENVIRONMENT": "production"},
        {"SYNTHNER_ENVIRONMENT": "production", "AMQP_URL": "amqp://guest:guest@rabbit:5672/"},
    ],
)
def test_invalid_settings_fail_at_start_up(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        BrokerSettings()


def test_production_accepts_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHNER_ENVIRONMENT", "production")
    monkeypatch.setenv("AMQP_URL", "amqps://synthner:long-random@rabbit:5671/")
    assert BrokerSettings().environment == "production"


def test_describe_error_keeps_handler_messages_but_hides_other_exception_text() -> None:
    assert describe_error(RetryableError("LLM answered 503")) == "RetryableError: LLM answered 503"
    assert describe_error(MessageDecodeError("text: Field required")).endswith("text: Field required")
    hidden = describe_error(KeyError("Patient John Doe"))
    assert "John" not in hidden
    assert "KeyError" in hidden


def test_describe_error_says_when_it_shortens_a_reason() -> None:
    text = describe_error(RetryableError("x" * (MAX_REASON_CHARS + 50)))
    assert text.endswith("more characters not shown]")


def test_a_reason_is_one_bounded_line() -> None:
    reason = bounded_reason("first line\nforged: second line\x1b[31m" + "y" * 10_000)
    assert "\n" not in reason
    assert "\x1b" not in reason
    assert len(reason) < MAX_REASON_CHARS + 50


@pytest.mark.parametrize(
    ("message_id", "shown"),
    [
        ("6f1c2a9e-31b4-4c2e-9a55-0d2f7f1e8b11", "6f1c2a9e-31b4-4c2e-9a55-0d2f7f1e8b11"),
        (None, "<no id>"),
        ("Jane Roe, born 1970-01-01", "<id of 25 characters>"),
        ("x" * 200, "<id of 200 characters>"),
    ],
)
def test_a_delivery_id_is_logged_only_when_it_is_a_short_plain_token(message_id: str | None, shown: str) -> None:
    assert safe_id(message_id) == shown


def test_processed_keys_forget_the_least_recently_used_beyond_capacity() -> None:
    keys = ProcessedKeys(capacity=2)
    keys.add("a")
    keys.add("b")
    assert "a" in keys  # touching a makes b the oldest
    keys.add("c")
    assert "a" in keys
    assert "b" not in keys
    assert "c" in keys


def test_json_logs_are_one_object_per_line_without_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        try:
            raise ValueError("Patient Jane Roe")
        except ValueError:
            logging.getLogger("synthner.test").exception("handler failed for note %s", "abc123")
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level
    line = capsys.readouterr().err.strip()
    entry = json.loads(line)
    assert entry["message"] == "handler failed for note abc123"
    assert entry["exception"] == "ValueError"
    assert "Jane" not in line
