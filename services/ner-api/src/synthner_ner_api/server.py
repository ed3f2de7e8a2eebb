"""The API on uvicorn as a :class:`~synthner_shared.app.ServiceApp`, so it runs like every other service.

The runner (:func:`synthner_shared.app.run_service`) owns SIGTERM and SIGINT, so uvicorn's own signal handlers are
off. A stop request shuts uvicorn down as a signal to it would: no new connections, requests in flight get
``GRACEFUL_SHUTDOWN_S`` to finish, then the app's lifespan ends; a second request stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE

from synthner_shared.messaging import Health

GRACEFUL_SHUTDOWN_S = 30


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the runner's signal handlers call ApiServer.request_stop

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


class ApiServer:
    """``app`` served on ``host:port``; it answers its own probes (``/livez``, ``/readyz``) there."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.app = app
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,  # our own request log line carries no query strings or bodies
            # The peer address is the TCP peer's: X-Forwarded-For never rewrites it, since the trusted-proxy check
            # (trusted_proxy_cidrs) believes the user header only from the proxy's own address.
            proxy_headers=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self._server = _Uvicorn(config)

    async def wait_started(self) -> None:
        """Return once the app's lifespan has started and the port listens (for tests and in-process runs)."""
        await self._server.listening.wait()

    def health(self) -> Health | None:
        return None

    async def run(self) -> bool:
        await self._server.serve()
        if not self._server.started:
            raise SystemExit(STARTUP_FAILURE)  # uvicorn logged why (a failed start-up), as uvicorn.run exits
        return True

    def request_stop(self) -> None:
        if self._server.should_exit:
            self._server.force_exit = True
        self._server.should_exit = True

    async def aclose(self) -> None:
        """Nothing left to close: uvicorn ended the app's lifespan (the batcher, the model-event listener)."""
