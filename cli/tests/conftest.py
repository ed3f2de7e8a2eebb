"""Fixtures of the CLI's tests."""

from __future__ import annotations

import pytest

from synthner.supervisor import settings_env
from synthner_shared.messaging import BrokerSettings


@pytest.fixture
def broker_env(broker_settings: BrokerSettings, monkeypatch: pytest.MonkeyPatch) -> BrokerSettings:
    """The command reads the test's broker and namespace from the environment, as in a deployment (the queue
    arguments too, so that it declares the queues as ``broker_probe`` did)."""
    monkeypatch.setenv("AMQP_URL", broker_settings.url.get_secret_value())
    for name, value in settings_env("SYNTHNER_BROKER_", broker_settings).items():
        monkeypatch.setenv(name, value)
    return broker_settings
