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

from synthner_annotator.egress import EgressPolicy
from synthner_shared.egress import InternalHosts
from synthner_shared.leakgate import LeakGate
from synthner_shared.ngrams import NgramReference
from synthner_shared.testing_http import Answer as HttpAnswer
from synthner_shared.testing_http import JsonHttpServer


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


class OpenAICompatibleServer:
    """``POST /v1/chat/completions`` answered by a script after ``latency_s``; ``GET /v1/models`` for readiness."""

    def __init__(self, script: Script, latency_s: float = 0.0, model: str = "test-model") -> None:
        self.script = script
        self.latency_s = latency_s
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._http = JsonHttpServer(self._answer)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._http.port}/v1"

    async def start(self) -> None:
        await self._http.start()

    async def stop(self) -> None:
        await self._http.stop()

    async def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> HttpAnswer:
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


REFERENCE_NOTES = (
    "Patient seen in the ward for a routine review; observations stable overnight, plan unchanged.",
    "Referral for physiotherapy after knee surgery last spring, walking with two crutches around the ward, pain "
    "controlled with regular paracetamol and ice packs at night.",
)
"""Stand-ins for a hospital's real notes: the reference of :func:`checked_egress`, sharing no 8-gram with the
sample notes of the tests."""


def checked_egress(*reference_notes: str, hosts: InternalHosts | None = None) -> EgressPolicy:
    """An egress policy whose leak gate has a reference (of ``reference_notes``, by default :data:`REFERENCE_NOTES`),
    so notes the gate passes may go to an external endpoint."""
    reference = NgramReference.build(reference_notes or REFERENCE_NOTES)
    return EgressPolicy(hosts or InternalHosts(), LeakGate(reference))
