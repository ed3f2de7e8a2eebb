"""One composition root per service: what every ``python -m synthner_<svc>`` does around its service, in one place.

A service's root, ``synthner_<svc>.app.build(settings, ...)``, puts the service together from its settings and returns
a :class:`ServiceApp`. Its ``__main__`` hands that root to :func:`run_service`, which

- switches the model hubs off (:func:`~synthner_shared.offline.stay_offline`);
- reads the settings; invalid ones (a pydantic ``ValidationError``) are one line on stderr and exit code 2;
- sets up logging (:func:`~synthner_shared.logs.configure_logging`): JSON with ``SYNTHNER_ENVIRONMENT=production``,
  text otherwise, at ``SYNTHNER_LOG_LEVEL`` (``INFO``);
- builds the service; a configuration error the service names (an unknown prompt, a CUDA device without a GPU, ...)
  is one line on stderr and exit code 2;
- runs it until SIGTERM or SIGINT, which asks it to stop: it stops consuming (or accepting requests), lets in-flight
  work finish within its grace period and returns. Exit code 0 when that work finished, 1 when some was handed back
  to the broker. A signal that comes while the service is still being built cancels the build (what it opened is
  closed) and exits 128 + the signal number (:class:`~synthner_shared.stopping.Stopped`);
- closes what the root opened (:meth:`ServiceApp.aclose`), however the run ended.

:class:`BrokerApp` is the :class:`ServiceApp` of a consuming service: its :class:`~synthner_shared.messaging.Service`,
the resources its handlers use, and the ``/livez``, ``/readyz`` and ``/metrics`` server (:func:`serve_health`): its
registry holds the consumers' counters, the process's memory and CPU and the process-wide metrics
(:mod:`synthner_shared.observability.metrics`). With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, :func:`run_service` also
exports traces (:mod:`synthner_shared.observability.tracing`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Literal, Protocol, TypeVar

from prometheus_client.registry import Collector
from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from synthner_shared.contracts import describe_validation_error
from synthner_shared.logs import LogFormat, configure_logging
from synthner_shared.messaging import Health, Service, serve_health
from synthner_shared.observability.metrics import exposition, service_registry
from synthner_shared.observability.tracing import configure_tracing, shutdown_tracing
from synthner_shared.offline import stay_offline
from synthner_shared.stopping import STOP_SIGNALS, Stopped

log = logging.getLogger(__name__)
S = TypeVar("S")

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - probes reach a pod from outside its network namespace
"""Where the probe server listens unless a service's settings say otherwise."""


class ServiceApp(Protocol):
    """A service as its composition root built it: resources open, nothing consumed or served yet."""

    def health(self) -> Health | None:
        """What the probe server answers; None for a service that answers its probes on its own HTTP port."""
        ...

    async def run(self) -> bool:
        """Consume (or serve) until :meth:`request_stop`; True when in-flight work finished within the grace period."""
        ...

    def request_stop(self) -> None:
        """Stop consuming (or accepting requests) and let :meth:`run` return; safe to call more than once."""
        ...

    async def aclose(self) -> None:
        """Release what the root opened (clients, databases, models)."""
        ...


class BrokerApp:
    """A consuming service: its :class:`Service`, the resources its handlers use, and where it answers probes and
    ``/metrics`` (its :attr:`metrics` registry, with the collectors of ``metrics`` added).

    ``run`` is the service's own loop when it has more than the consumers (the trainer's training worker); by default
    the :class:`Service` alone. Signals are the runner's (:func:`run_service`), never the :class:`Service`'s.
    """

    def __init__(
        self,
        service: Service,
        resources: AsyncExitStack,
        health_address: tuple[str, int] | None = None,
        run: Callable[[], Awaitable[bool]] | None = None,
        metrics: Sequence[Collector] = (),
    ) -> None:
        self.service = service
        self.health_address = health_address
        self.metrics = service_registry(service, metrics)
        self._resources = resources
        self._run = run if run is not None else lambda: service.run(install_signal_handlers=False)

    def health(self) -> Health:
        return self.service.health()

    async def wait_started(self) -> None:
        """Return once every consumer is consuming (for tests and in-process runs)."""
        await self.service.wait_started()

    async def run(self) -> bool:
        server = (
            await serve_health(self.health, *self.health_address, metrics=exposition(self.metrics))
            if self.health_address is not None
            else None
        )
        try:
            return await self._run()
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()

    def request_stop(self) -> None:
        self.service.request_stop()

    async def aclose(self) -> None:
        await self._resources.aclose()


def probe_address(port: int | None, host: str = ALL_INTERFACES) -> tuple[str, int] | None:
    """Where to serve ``/livez`` and ``/readyz``: nowhere unless a port is configured."""
    return (host, port) if port is not None else None


class LogSettings(BaseSettings):
    """How a service logs: ``SYNTHNER_LOG_LEVEL`` and, from ``SYNTHNER_ENVIRONMENT``, the format."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", validation_alias=AliasChoices("SYNTHNER_LOG_LEVEL", "level")
    )
    environment: Literal["local", "production"] = Field(
        default="local",
        validation_alias=AliasChoices("SYNTHNER_ENVIRONMENT", "environment"),
        description="'production' logs JSON lines for the cluster's log shippers.",
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def format(self) -> LogFormat:
        return "json" if self.environment == "production" else "text"


def run_service(
    name: str,
    settings: Callable[[], S],
    build: Callable[[S], Awaitable[ServiceApp]],
    *,
    configuration_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Run a service from its composition root until SIGTERM; returns the process's exit code.

    ``settings`` reads the service's settings from the environment; ``build`` is its root. ``name`` starts every line
    this writes to stderr.
    """
    stay_offline()
    try:
        logs = LogSettings()
        read = settings()
    except ValidationError as exc:
        print(f"{name}: invalid settings: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    configure_logging(logs.level, logs.format)
    configure_tracing(name)
    try:
        finished = asyncio.run(_serve(lambda: build(read)))
    except Stopped as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return exc.exit_code
    except configuration_errors as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown_tracing()
    return 0 if finished else 1


async def _serve(build: Callable[[], Awaitable[ServiceApp]]) -> bool:
    """Build, run and close; a signal cancels the build, or asks the built service to stop."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    app: ServiceApp | None = None
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if app is not None:
            log.info("received %s: stopping, finishing in-flight work", signal.Signals(signum).name)
            app.request_stop()
        elif len(received) == 1:
            main.cancel()  # nothing runs yet: the build's own clean-up closes what it opened

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        try:
            app = await build()
        except asyncio.CancelledError:
            if received:
                raise Stopped(received[0]) from None
            raise
        if received:  # the build finished despite the signal: close it unrun
            await app.aclose()
            raise Stopped(received[0])
        try:
            return await app.run()
        finally:
            await app.aclose()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
