"""Handler deadlines and consumer timeouts per queue role: a configuration whose deadline (plus the time to publish the
outputs and a retry) is not below the broker's consumer timeout is refused at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from synthner_shared.app import run_service
from synthner_shared.messaging import BrokerSettings
from synthner_shared.messaging.broker import parse_version
from synthner_shared.messaging.settings import (
    CONSUMER_TIMEOUTS_S,
    HANDLER_DEADLINES_S,
    OTHER_ROLES_CONSUMER_TIMEOUT_S,
    OTHER_ROLES_DEADLINE_S,
)
from synthner_shared.messaging.topology import NER_API, SHARED_ROLES


def test_every_role_has_a_default_deadline_below_its_default_consumer_timeout() -> None:
    settings = BrokerSettings()
    assert set(HANDLER_DEADLINES_S) == set(CONSUMER_TIMEOUTS_S)
    for role in HANDLER_DEADLINES_S:
        margin = settings.output_retry_s + settings.publish_timeout_s
        assert settings.handler_deadline_s(role) + margin < settings.consumer_timeout_s(role)
    # RabbitMQ's own default consumer timeout is 30 minutes: no role's default is above it.
    assert max(CONSUMER_TIMEOUTS_S.values()) <= 1_800


def test_every_queue_role_of_the_topology_has_a_deadline_and_a_consumer_timeout() -> None:
    roles = {role.name for role in (*SHARED_ROLES, NER_API)}
    assert roles <= set(HANDLER_DEADLINES_S)
    assert roles <= set(CONSUMER_TIMEOUTS_S)


def test_a_role_outside_the_topology_gets_the_short_default() -> None:
    # A tool's own queue (the local pipeline's observer) is consumed by the same runner: it must get a deadline too.
    settings = BrokerSettings()
    assert "observer" not in HANDLER_DEADLINES_S
    assert settings.handler_deadline_s("observer") == OTHER_ROLES_DEADLINE_S
    assert settings.consumer_timeout_s("observer") == OTHER_ROLES_CONSUMER_TIMEOUT_S
    margin = settings.output_retry_s + settings.publish_timeout_s
    assert OTHER_ROLES_DEADLINE_S + margin < OTHER_ROLES_CONSUMER_TIMEOUT_S
    with pytest.raises(ValidationError, match="any other role"):
        # Every named role has room; the others' default has not.
        BrokerSettings(
            output_retry_s=OTHER_ROLES_CONSUMER_TIMEOUT_S,
            consumer_timeouts_s=dict.fromkeys(CONSUMER_TIMEOUTS_S, 9_000.0),
        )


def test_overrides_per_role_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHNER_BROKER_HANDLER_DEADLINES_S", '{"generator": 600}')
    monkeypatch.setenv("SYNTHNER_BROKER_CONSUMER_TIMEOUTS_S", '{"generator": 900, "trainer": 3600}')
    settings = BrokerSettings()
    assert settings.handler_deadline_s("generator") == 600
    assert settings.consumer_timeout_s("generator") == 900
    assert settings.consumer_timeout_s("trainer") == 3600
    assert settings.handler_deadline_s("annotator") == HANDLER_DEADLINES_S["annotator"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"handler_deadlines_s": {"generator": 1_800}}, "is not below its consumer timeout 1800s"),
        ({"consumer_timeouts_s": {"trainer": 300}}, "role 'trainer'"),
        ({"output_retry_s": 1_000}, "output_retry_s 1000s"),
        ({"handler_deadlines_s": {"generater": 60}}, "unknown queue roles ['generater']"),
        ({"consumer_timeouts_s": {"annotator": 0}}, "seconds must be positive"),
    ],
)
def test_a_deadline_not_below_the_consumer_timeout_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        BrokerSettings(**changes)  # type: ignore[arg-type]


def test_a_service_with_such_settings_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SYNTHNER_BROKER_HANDLER_DEADLINES_S", '{"annotator": 5000}')

    async def build(settings: BrokerSettings) -> object:
        raise AssertionError("never built")

    assert run_service("annotator", BrokerSettings, build) == 2  # type: ignore[arg-type]
    error = capsys.readouterr().err
    assert error.startswith("annotator: invalid settings:")
    assert "role 'annotator'" in error
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "version"), [("3.10.8", (3, 10, 8)), ("4.3.0-rc.1", (4, 3, 0)), ("3.13.7+1.g", (3, 13, 7)), ("", ())]
)
def test_broker_versions_parse_to_comparable_tuples(text: str, version: tuple[int, ...]) -> None:
    assert parse_version(text) == version
