"""Test support: a real HTTP server on 127.0.0.1 that speaks OpenAI's documented chat-completions wire format.

It is the "fake at the wire-format boundary" for what cannot run here (OpenAI itself): tests and benchmarks script
its answers — a reply text, an HTTP error with ``Retry-After``, a fixed latency — and read back the requests it got
(for instance the ``response_format`` sent). HTTP/1.1 with keep-alive and ``Content-Length`` bodies, which is what
the ``openai`` SDK (httpx) sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Answer:
    """What the server answers to one request: a reply text (200), or an HTTP error."""

    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str = "server_error"
    finish_reason: str = "stop"

    @classmethod
    def error(cls, status: int, retry_after: float | None = None, error_type: str = "server_error") -> Answer:
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        return cls(status=status, headers=headers, error_type=error_type)


Script = Callable[[dict[str, Any]], Awaitable[Answer]]
"""Decides the answer to a request body (the parsed JSON of ``POST /v1/chat/completions``)."""


def user_text(request: dict[str, Any]) -> str:
    """The last user message of a chat request (the note to annotate)."""
    return str([m for m in request["messages"] if m["role"] == "user"][-1]["content"])


def completion_body(request: dict[str, Any], answer: Answer) -> dict[str, Any]:
    content = answer.content or ""
    prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
    prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, len(content) // 4)
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "test-model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": answer.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


class OpenAICompatibleServer:
    """``POST /v1/chat/completions`` answered by a script after ``latency_s``; ``GET /v1/models`` for readiness."""

    def __init__(self, script: Script, latency_s: float = 0.0, model: str = "test-model") -> None:
        self.script = script
        self.latency_s = latency_s
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):  # idle keep-alive connections: their handlers end normally
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, payload = await self._answer(method, path, headers, body)
                data = json.dumps(payload).encode()
                head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Content-Type: application/json"]
                head += [f"{k}: {v}" for k, v in extra.items()] + [f"Content-Length: {len(data)}", "", ""]
                writer.write("\r\n".join(head).encode("latin-1") + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            return 200, {}, {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "tests"}]}
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, {}, {"error": {"message": "not found", "type": "invalid_request_error", "code": None}}
        request = json.loads(body)
        self.requests.append(request)
        self.headers.append(headers)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        answer = await self.script(request)
        if answer.status != 200:
            error = {
                "message": f"scripted HTTP {answer.status}",
                "type": answer.error_type,
                "param": None,
                "code": None,
            }
            return answer.status, answer.headers, {"error": error}
        return 200, answer.headers, completion_body(request, answer)


@contextlib.asynccontextmanager
async def openai_compatible_server(script: Script, latency_s: float = 0.0) -> AsyncIterator[OpenAICompatibleServer]:
    server = OpenAICompatibleServer(script, latency_s)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def constant(content: str) -> Script:
    async def script(request: dict[str, Any]) -> Answer:
        return Answer(content)

    return script


def sequence(*answers: Answer) -> Script:
    """Answers in turn; the last one repeats."""
    queue = list(answers)

    async def script(request: dict[str, Any]) -> Answer:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return script


def lexicon_oracle(terms: dict[str, str]) -> Script:
    """Answers the JSON design with every ``term -> label`` found in the note, in order of appearance."""

    async def script(request: dict[str, Any]) -> Answer:
        text = user_text(request)
        found = sorted((position, term) for term in terms for position in _positions(text, term))
        mentions = [{"label": terms[term], "text": term} for _, term in found]
        return Answer(json.dumps({"mentions": mentions}))

    return script


def _positions(text: str, term: str) -> list[int]:
    positions, at = [], text.find(term)
    while at >= 0:
        positions.append(at)
        at = text.find(term, at + 1)
    return positions
