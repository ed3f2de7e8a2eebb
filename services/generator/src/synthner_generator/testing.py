"""A local LLM server for tests and benchmarks that speaks both wire formats the generator uses.

- TGI's native API: ``POST /generate`` (and ``POST /``, which answers a one-element list, as TGI does) with
  ``{"inputs", "parameters": {...}}``, answering ``{"generated_text", "details": {"finish_reason", ...}}``;
- OpenAI's chat completions: ``POST /v1/chat/completions``, answering a ``chat.completion`` object;
- OpenAI's plain completions: ``POST /v1/completions`` (``prompt`` in, a ``text_completion`` object out), unless
  ``completions`` is False (then 404, as on a chat-only server).

It is a real HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length bodies), not a mock object: the SDKs talk to it
exactly as to a real endpoint. Each request waits ``latency_s`` (the fixed latency of the throughput benchmark), then
asks ``reply`` for the text. ``fail_next`` makes the next requests answer an HTTP error status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthner_generator.settings import GeneratorSettings
from synthner_shared.contracts import GenerationRequested
from synthner_shared.testing_http import Answer, JsonHttpServer

REPLY_WORDS = tuple(
    " ".join(
        (
            "patient admitted with shortness of breath and fever chest x-ray showed a right lower lobe infiltrate",
            "treated with intravenous antibiotics oxygen saturation improved blood cultures were negative renal",
            "function remained stable the patient was mobilised and discharged home with oral medication follow-up",
            "in the clinic in two weeks blood pressure controlled heart rate regular no signs of heart failure pain",
            "managed with paracetamol wound healing well echocardiography normal ejection fraction lungs clear",
        )
    ).split(" ")
)


@dataclass(frozen=True)
class LLMRequest:
    """What the server received, normalised over both wire formats."""

    path: str
    prompt: str
    seed: int | None
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str = "stop"  # 'stop' or 'length' (OpenAI names; mapped to TGI's for /generate)


ReplyFunction = Callable[[LLMRequest], Reply]


def default_reply(request: LLMRequest) -> Reply:
    """A fresh pseudo-note per seed: about 80 words drawn from a fixed list, plus every ``- Label: text`` line of the
    prompt (so label-conditioned prompts get their entities back)."""
    rng = random.Random(request.seed if request.seed is not None else request.prompt)  # noqa: S311 - test text
    words = [rng.choice(REPLY_WORDS) for _ in range(80)]
    sentences = [" ".join(words[i : i + 10]).capitalize() + "." for i in range(0, len(words), 10)]
    requested = [
        line.split(":", 1)[1].strip() for line in request.prompt.splitlines() if line.startswith("- ") and ":" in line
    ]
    if requested:
        sentences.append("Relevant findings: " + ", ".join(requested) + ".")
    return Reply(" ".join(sentences))


@dataclass
class LocalLLMServer:
    """Run with ``async with local_llm_server(...) as server``; ``server.url`` is ``http://127.0.0.1:<port>``."""

    reply: ReplyFunction = default_reply
    latency_s: float = 0.0
    fail_next: list[int] = field(default_factory=list)
    requests: list[LLMRequest] = field(default_factory=list)
    traceparents: list[str | None] = field(default_factory=list)
    """Each request's ``traceparent`` header (None when it had none)."""
    completions: bool = True
    port: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _answer(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any] | list[Any]]:
        if method != "POST":
            return 405, {"error": "method not allowed"}
        payload = json.loads(body or b"{}")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if self.fail_next:
                status = self.fail_next.pop(0)
                kind = {422: "validation", 429: "overloaded", 503: "overloaded"}.get(status, "generation")
                return status, {"error": f"injected failure {status}", "error_type": kind}
            if path == "/v1/chat/completions":
                return 200, self._chat(payload)
            if path == "/v1/completions" and self.completions:
                return 200, self._completion(payload)
            if path in ("/generate", "/"):
                answer = self._generate(path, payload)
                return 200, [answer] if path == "/" else answer
            return 404, {"error": f"no route {path}"}
        finally:
            self.in_flight -= 1

    def _record_and_reply(self, path: str, prompt: str, payload: dict[str, Any], prompt_key: str) -> Reply:
        """Record the request (every field but the prompt and the seed as parameters) and make the reply."""
        parameters = {k: v for k, v in payload.items() if k not in (prompt_key, "seed")}
        request = LLMRequest(path, prompt, payload.get("seed"), parameters)
        self.requests.append(request)
        return self.reply(request)

    @staticmethod
    def _usage(prompt: str, text: str) -> dict[str, int]:
        prompt_tokens, completion_tokens = len(prompt.split()), len(text.split())
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def _chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        prompt = "\n".join(str(m.get("content", "")) for m in payload.get("messages", []))
        reply = self._record_and_reply("/v1/chat/completions", prompt, payload, "messages")
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model", "local"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": reply.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": self._usage(prompt, reply.text),
        }

    def _completion(self, payload: dict[str, Any]) -> dict[str, Any]:
        prompt = str(payload.get("prompt", ""))
        reply = self._record_and_reply("/v1/completions", prompt, payload, "prompt")
        return {
            "id": f"cmpl-{len(self.requests)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": payload.get("model", "local"),
            "choices": [{"index": 0, "text": reply.text, "finish_reason": reply.finish_reason, "logprobs": None}],
            "usage": self._usage(prompt, reply.text),
        }

    def _generate(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        parameters = dict(payload.get("parameters") or {})
        request = LLMRequest(path, str(payload.get("inputs", "")), parameters.pop("seed", None), parameters)
        self.requests.append(request)
        reply = self.reply(request)
        finish = {"stop": "eos_token", "length": "length"}.get(reply.finish_reason, reply.finish_reason)
        answer: dict[str, Any] = {"generated_text": reply.text}
        if parameters.get("details"):
            answer["details"] = {
                "finish_reason": finish,
                "generated_tokens": len(reply.text.split()),
                "seed": request.seed,
                "prefill": [],
                "tokens": [],
            }
        return answer

    async def _answer_http(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        self.traceparents.append(headers.get("traceparent"))
        status, answer = await self._answer(method, path, body)
        return status, {}, answer


@contextlib.asynccontextmanager
async def local_llm_server(
    reply: ReplyFunction = default_reply,
    latency_s: float = 0.0,
    fail_next: list[int] | None = None,
    *,
    completions: bool = True,
) -> AsyncIterator[LocalLLMServer]:
    """Start the server on a free port of 127.0.0.1 for the block's duration."""
    server = LocalLLMServer(reply=reply, latency_s=latency_s, fail_next=list(fail_next or []), completions=completions)
    http = JsonHttpServer(server._answer_http)
    await http.start()
    server.port = http.port
    try:
        yield server
    finally:
        await http.stop()


async def _serve_forever(latency_s: float) -> None:
    async with local_llm_server(latency_s=latency_s) as server:
        print(f"PORT {server.port}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """``python -m synthner_generator.testing --latency L``: serve until killed; prints ``PORT <n>`` when ready."""
    import argparse  # noqa: PLC0415 - only this entry point needs it

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.latency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def settings_for(url: str, state: Path, **changes: Any) -> GeneratorSettings:
    """Settings for the local LLM server at ``url``: small notes, quick back-off, state under ``state``."""
    values: dict[str, Any] = {
        "backend": "openai",
        "endpoint_url": f"{url}/v1",
        "endpoint_zone": "internal",  # the test server runs on this machine
        "model": "test-model",
        "state_dir": state / "generator",
        "tracker_db": state / "tracker.sqlite3",
        "min_chars": 50,
        "llm_attempts": 2,
        "llm_backoff_s": (0.01,),
        "concurrency": 4,
        "part_size": 4,
        "instance": "test",
    }
    values.update(changes)
    return GeneratorSettings.model_validate(values)


def sample_job(**changes: Any) -> GenerationRequested:
    values: dict[str, Any] = {
        "job_id": "job-1",
        "producer": "tests",
        "count": 3,
        "language": "en",
        "note_types": ["discharge_summary", "radiology_report"],
        "entity_labels": ["Disease"],
        "seed": 11,
        "prompt": {"name": "clinical_note", "version": "v1"},
    }
    return GenerationRequested.model_validate({**values, **changes})
