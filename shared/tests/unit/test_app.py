"""The composition roots' runner: settings and configuration errors are exit 2, SIGTERM stops a service gracefully,
what the root opened is closed however the run ends, and a consuming service answers probes where configured."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest
from pydantic import BaseModel, ValidationError

from synthner_shared import app as app_module
from synthner_shared.app import BrokerApp, LogSettings, probe_address, run_service
from synthner_shared.local_llm import free_port
from synthner_shared.messaging import BrokerSettings, Health, Service


class FakeApp:
    """A service that runs until asked to stop (or sends itself a signal first), recording what happened."""

    def __init__(self, events: list[str], *, finished: bool = True, signal_itself: bool = False) -> None:
        self.events = events
        self.finished = finished
        self.signal_itself = signal_itself
        self._stop = asyncio.Event()

    def health(self) -> Health | None:
        return None

    async def run(self) -> bool:
        self.events.append("run")
        if self.signal_itself:
            os.kill(os.getpid(), signal.SIGTERM)
        await self._stop.wait()
        return self.finished

    def request_stop(self) -> None:
        self.events.append("stop")
        self._stop.set()

    async def aclose(self) -> None:
        self.events.append("closed")


class Limits(BaseModel):
    workers: int


class BadConfiguration(ValueError):
    pass


OFFLINE_CALLS: list[str] = []


@pytest.fixture(autouse=True)
def plain_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Text logs at INFO unless a test says otherwise; the root logger as it was after each test (the runner sets
    it up for the process)."""
    for key in ("SYNTHNER_LOG_LEVEL", "SYNTHNER_ENVIRONMENT"):
        monkeypatch.delenv(key, raising=False)
    # The runner switches the model hubs off for its process; the test process keeps its own environment.
    monkeypatch.setattr(app_module, "stay_offline", lambda: OFFLINE_CALLS.append("offline"))
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved_handlers, saved_level


def test_invalid_settings_are_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    built: list[object] = []

    async def build(limits: Limits) -> FakeApp:
        built.append(limits)
        return FakeApp([])

    code = run_service("synthner-test", lambda: Limits.model_validate({"workers": "many"}), build)
    assert code == 2
    assert capsys.readouterr().err == (
        "synthner-test: invalid settings: Limits: workers: Input should be a valid integer, unable to parse string "
        "as an integer [int_parsing]\n"
    )
    assert built == []


def test_the_hubs_are_switched_off_before_the_settings_are_read() -> None:
    OFFLINE_CALLS.clear()

    def settings() -> None:
        assert OFFLINE_CALLS == ["offline"]

    async def build(_: None) -> FakeApp:
        raise BadConfiguration("stop here")

    assert run_service("synthner-test", settings, build, configuration_errors=(BadConfiguration,)) == 2
    assert OFFLINE_CALLS == ["offline"]


def test_a_configuration_error_of_the_build_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    async def build(_: None) -> FakeApp:
        raise BadConfiguration("unknown prompt json_mentions v9")

    code = run_service("synthner-test", lambda: None, build, configuration_errors=(BadConfiguration,))
    assert (code, capsys.readouterr().err) == (2, "synthner-test: unknown prompt json_mentions v9\n")


def test_other_errors_of_the_build_are_not_taken_for_configuration_errors() -> None:
    async def build(_: None) -> FakeApp:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_service("synthner-test", lambda: None, build, configuration_errors=(BadConfiguration,))


@pytest.mark.parametrize(("finished", "code"), [(True, 0), (False, 1)])
def test_sigterm_stops_the_service_gracefully_then_closes_it(finished: bool, code: int) -> None:
    events: list[str] = []

    async def build(_: None) -> FakeApp:
        return FakeApp(events, finished=finished, signal_itself=True)

    assert run_service("synthner-test", lambda: None, build) == code
    assert events == ["run", "stop", "closed"]


def test_a_signal_during_the_build_cancels_it_and_exits_128_plus_its_number(
    capsys: pytest.CaptureFixture[str],
) -> None:
    events: list[str] = []

    async def build(_: None) -> FakeApp:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.Event().wait()
        finally:
            events.append("build cleaned up")
        return FakeApp(events)

    assert run_service("synthner-test", lambda: None, build) == 128 + signal.SIGTERM
    assert events == ["build cleaned up"]
    assert capsys.readouterr().err == "synthner-test: stopped by SIGTERM\n"


def test_logging_is_json_in_production_at_the_configured_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHNER_ENVIRONMENT", "production")
    monkeypatch.setenv("SYNTHNER_LOG_LEVEL", "warning")
    settings = LogSettings()
    assert (settings.level, settings.format) == ("WARNING", "json")
    monkeypatch.setenv("SYNTHNER_LOG_LEVEL", "loud")
    with pytest.raises(ValidationError):
        LogSettings()


def test_run_service_configures_logging_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHNER_LOG_LEVEL", "ERROR")
    levels: list[int] = []

    async def build(_: None) -> FakeApp:
        levels.append(logging.getLogger().level)
        app = FakeApp([])
        app.request_stop()
        return app

    assert run_service("synthner-test", lambda: None, build) == 0
    assert levels == [logging.ERROR]


def test_probe_address_is_none_without_a_port() -> None:
    assert probe_address(None) is None
    assert probe_address(8081) == ("0.0.0.0", 8081)  # noqa: S104 - what the cluster's probes reach
    assert probe_address(8081, "127.0.0.1") == ("127.0.0.1", 8081)


async def get(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
    await writer.drain()
    answer = (await reader.read()).decode()
    writer.close()
    return answer.splitlines()[0]


async def test_a_broker_app_answers_probes_while_it_runs_and_closes_its_resources() -> None:
    port = free_port()
    running, stop = asyncio.Event(), asyncio.Event()
    closed: list[str] = []

    async def run() -> bool:  # called once the probe server listens
        running.set()
        await stop.wait()
        return True

    resources = AsyncExitStack()
    resources.callback(closed.append, "client")
    service = Service(BrokerSettings(), "tests", [])  # never connected: live, not ready
    app = BrokerApp(service, resources, ("127.0.0.1", port), run=run)
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(running.wait(), 10)
    assert await get(port, "/livez") == "HTTP/1.1 200 OK"
    assert await get(port, "/readyz") == "HTTP/1.1 503 Service Unavailable"
    app.request_stop()
    stop.set()
    assert await task is True
    await app.aclose()
    assert closed == ["client"]
    with pytest.raises(ConnectionRefusedError):
        await get(port, "/livez")
