"""Test support: a small HTTP/1.1 server on 127.0.0.1 that answers JSON, for fakes of providers' wire formats.

The tests' OpenAI-compatible and TGI fakes (annotator, generator) answer through it: keep-alive connections, bodies by
``Content-Length``, and on stop the idle connections closed so their handlers end. Plain asyncio: nothing to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

Answer = tuple[int, dict[str, str], object]
"""Status, extra response headers, JSON body."""
Handler = Callable[[str, str, dict[str, str], bytes], Awaitable[Answer]]
"""``(method, path without the query, lower-case request headers, body)`` -> :data:`Answer`."""

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 429: "Too Many Requests"}


class JsonHttpServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self.close_connections()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def close_connections(self) -> None:
        """Close every client connection (their handlers then end on their own)."""
        for writer in list(self._connections):
            writer.close()
        for writer in list(self._connections):
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while request_line := await reader.readline():
                method, target, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, payload = await self.handler(method, target.split("?", 1)[0], headers, body)
                data = json.dumps(payload).encode()
                head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", "Content-Type: application/json"]
                head += [f"{k}: {v}" for k, v in extra.items()] + [f"Content-Length: {len(data)}", "", ""]
                writer.write("\r\n".join(head).encode("latin-1") + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()
