"""A consuming service's life cycle: connect, consume, report health, and shut down gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from synthner_shared.messaging.broker import Broker
from synthner_shared.messaging.consumer import Consumer, ConsumerRunner
from synthner_shared.messaging.settings import BrokerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    """What liveness and readiness probes need: the process answers (live), and it is connected and consuming."""

    connected: bool
    consuming: bool
    in_flight: int

    @property
    def ready(self) -> bool:
        return self.connected and self.consuming


class Service:
    """Runs a set of consumers on one broker connection until asked to stop.

    ``run()`` installs SIGTERM/SIGINT handlers: on a signal it stops consuming, lets in-flight deliveries finish within
    ``shutdown_grace_s``, hands the rest back with explicit requeueing nacks before any channel closes (RabbitMQ 4
    counts a channel's returned messages toward their delivery limit, not a requeue), closes the connection and
    returns. With a
    ``health_address`` (host, port) it serves ``/livez`` and ``/readyz`` there for the orchestrator's probes.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        producer: str,
        consumers: Sequence[Consumer[Any]],
        health_address: tuple[str, int] | None = None,
    ) -> None:
        self.broker = Broker(settings, producer)
        self._consumers = consumers
        self._health_address = health_address
        self.runners: list[ConsumerRunner[Any]] = []
        self._stop = asyncio.Event()
        self._started = asyncio.Event()

    @property
    def consumers(self) -> Sequence[Consumer[Any]]:
        """What the service consumes (the CLI's in-process run calls their handlers without a broker)."""
        return self._consumers

    def health(self) -> Health:
        return Health(
            connected=self.broker.connected,
            consuming=bool(self.runners) and all(r.consuming for r in self.runners),
            in_flight=sum(r.in_flight for r in self.runners),
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def wait_stop_requested(self) -> None:
        await self._stop.wait()

    async def run(self, install_signal_handlers: bool = True) -> bool:
        """Run until :meth:`request_stop` or a signal; returns True when all in-flight work finished in time."""
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._on_signal, signum)
        health_server = (
            await serve_health(self.health, *self._health_address) if self._health_address is not None else None
        )
        try:
            await self.broker.connect()
            for consumer in self._consumers:
                runner = ConsumerRunner(self.broker, consumer)
                await runner.start()
                self.runners.append(runner)
            self._started.set()
            await self._stop.wait()
            return await self._shutdown()
        finally:
            if install_signal_handlers:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
            await self.broker.close()
            if health_server is not None:
                health_server.close()
                await health_server.wait_closed()

    def _on_signal(self, signum: int) -> None:
        log.info("received %s: stopping consumption, finishing in-flight work", signal.Signals(signum).name)
        self._stop.set()

    async def _shutdown(self) -> bool:
        grace_s = self.broker.settings.shutdown_grace_s
        deadline = asyncio.get_running_loop().time() + grace_s
        for runner in self.runners:
            await runner.stop_consuming()
        finished = True
        for runner in self.runners:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            finished = await runner.wait_idle(remaining) and finished
        for runner in self.runners:
            await runner.close()  # nacks (requeues) what it still holds, then closes its channel
        log.info("stopped (%s)", "all in-flight work finished" if finished else "unfinished work requeued")
        return finished


async def serve_health(
    health: Callable[[], Health], host: str, port: int, metrics: Callable[[], tuple[bytes, str]] | None = None
) -> asyncio.Server:
    """A minimal HTTP endpoint for probes: ``GET /livez`` (200 while the loop runs) and ``GET /readyz``
    (200 when connected and consuming, else 503). Bodies are the health as JSON. With ``metrics`` (the body and its
    content type, see :func:`synthner_shared.observability.metrics.exposition`) ``GET /metrics`` answers it too."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            current = health()
            content_type = "application/json"
            body = json.dumps({**asdict(current), "ready": current.ready}).encode()
            if path == "/livez":
                status = "200 OK"
            elif path == "/readyz":
                status = "200 OK" if current.ready else "503 Service Unavailable"
            elif path == "/metrics" and metrics is not None:
                status = "200 OK"
                body, content_type = metrics()
            else:
                status = "404 Not Found"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)
