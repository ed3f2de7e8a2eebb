"""One OpenAI-compatible chat endpoint (OpenAI, Azure OpenAI, vLLM, TGI Messages API, llama.cpp server, Ollama):
the ``openai`` SDK with our own concurrency cap, rate limits, retries and usage counters.

The SDK's own retries are off (``max_retries=0``) so that every wait is ours: exponential back-off with jitter on
429, 408, 409, 5xx, time-outs and connection errors, honouring ``Retry-After``/``retry-after-ms``. After
``max_attempts`` the call raises :class:`TransientAnnotationError` (the broker retries the message later). Other
4xx answers mean this request can never succeed and raise :class:`PermanentAnnotationError`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import openai
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from synthner_annotator.errors import PermanentAnnotationError, TransientAnnotationError
from synthner_annotator.ratelimit import Backoff, RateLimiter, Sleep, retry_after_seconds
from synthner_shared.observability.llm import llm_call

log = logging.getLogger(__name__)

StructuredOutput = Literal["json_schema", "json_object", "json_object_schema", "none"]
_TRANSIENT_STATUS = {408, 409, 429}


class EndpointSettings(BaseModel):
    """An LLM endpoint, declared internal or external (external ones only ever see synthetic, leak-checked notes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="llm", min_length=1, max_length=60, description="Name in logs and metrics.")
    base_url: str = Field(description="OpenAI-compatible API root, e.g. http://127.0.0.1:8080/v1.")
    model: str = Field(min_length=1, max_length=300)
    api_key: SecretStr = Field(default=SecretStr("not-needed"), description="Bearer key; local servers ignore it.")
    external: bool = Field(
        default=True,
        description="Outside the hospital's network. Default true: declare internal ones explicitly; a declared "
        "internal endpoint also needs its host on the internal-host allow-list (SYNTHNER_INTERNAL_HOSTS), or it "
        "is treated as external (refused at start-up in production).",
    )
    max_concurrency: int = Field(default=8, ge=1, le=1024, description="Requests in flight at once.")
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=50, description="Calls per request on retryable failures.")
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    structured_output: StructuredOutput = Field(
        default="json_schema",
        description="json_schema: OpenAI structured output with the reply's JSON schema (OpenAI, Azure, vLLM); "
        "json_object: JSON mode only; json_object_schema: JSON mode with a 'schema' key (llama-cpp-python's server "
        "turns it into a grammar); none: free text, parsed with repair.",
    )
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=2048, ge=1, le=65536)
    seed: int | None = None
    price_per_1k_prompt_tokens: float = Field(default=0.0, ge=0)
    price_per_1k_completion_tokens: float = Field(default=0.0, ge=0)


@dataclass
class Usage:
    """Counters of one endpoint (no text): calls, retries, tokens and cost."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in vars(self).items()}


@dataclass(frozen=True)
class ChatReply:
    content: str
    finish_reason: str | None
    attempts: int


def estimate_tokens(messages: Sequence[dict[str, str]], max_tokens: int) -> int:
    """A rough upper estimate for rate limiting (about four characters a token, plus the completion budget)."""
    return sum(len(m["content"]) for m in messages) // 3 + max_tokens


@functools.lru_cache(maxsize=32)
def response_format(mode: StructuredOutput, schema: type[BaseModel] | None) -> dict[str, Any] | None:
    """The ``response_format`` request field (built once per schema and mode)."""
    if schema is None or mode == "none":
        return None
    json_schema = schema.model_json_schema()
    if mode == "json_object":
        return {"type": "json_object"}
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": json_schema}
    return {"type": "json_schema", "json_schema": {"name": schema.__name__, "strict": True, "schema": json_schema}}


class ChatEndpoint:
    """Chat completions against one endpoint with its limits. One instance (one HTTP client) per process."""

    def __init__(
        self,
        settings: EndpointSettings,
        *,
        sleep: Sleep = asyncio.sleep,
        random_unit: Any = random.random,
    ) -> None:
        self.settings = settings
        self.usage = Usage()
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value(),
            timeout=settings.timeout_s,
            max_retries=0,
        )
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute, sleep=sleep)
        self._backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        self._sleep = sleep
        self._random_unit = random_unit

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, messages: Sequence[dict[str, str]], schema: type[BaseModel] | None = None) -> ChatReply:
        """One chat completion, retried on retryable failures; raises an :class:`AnnotatorError` when it gives up."""
        settings = self.settings
        estimate = estimate_tokens(messages, settings.max_tokens)
        extra: dict[str, Any] = {}
        if (fmt := response_format(settings.structured_output, schema)) is not None:
            # Sent as extra body: the SDK would otherwise walk the whole JSON schema on every request.
            extra["extra_body"] = {"response_format": fmt}
        if settings.seed is not None:
            extra["seed"] = settings.seed
        last_error = ""
        for attempt in range(1, settings.max_attempts + 1):
            retry_after: float | None = None
            await self._limiter.acquire(estimate)
            async with self._slots:
                self.usage.requests += 1
                try:
                    async with llm_call(f"annotator/{settings.name}", "chat", settings.model) as call:
                        response = await self._client.chat.completions.create(
                            model=settings.model,
                            messages=list(messages),  # type: ignore[arg-type]
                            temperature=settings.temperature,
                            max_tokens=settings.max_tokens,
                            extra_headers=call.headers or None,
                            **extra,
                        )
                except openai.APIStatusError as exc:
                    status = exc.status_code
                    if status not in _TRANSIENT_STATUS and status < 500:
                        self.usage.failed += 1
                        self._limiter.settle(estimate, 0)
                        raise PermanentAnnotationError(
                            f"endpoint {settings.name} refused the request with HTTP {status}", attempts=attempt
                        ) from None
                    self.usage.rate_limited += status == 429
                    retry_after = retry_after_seconds(exc.response.headers)
                    last_error = f"HTTP {status}"
                except openai.APIConnectionError as exc:  # includes APITimeoutError
                    last_error = type(exc).__name__
                else:
                    usage = response.usage
                    prompt_tokens = usage.prompt_tokens if usage else 0
                    completion_tokens = usage.completion_tokens if usage else 0
                    self._count_tokens(prompt_tokens, completion_tokens)
                    self._limiter.settle(estimate, prompt_tokens + completion_tokens if usage else estimate)
                    if not response.choices:
                        return ChatReply("", None, attempt)
                    choice = response.choices[0]
                    return ChatReply(choice.message.content or "", choice.finish_reason, attempt)
            if attempt < settings.max_attempts:
                self.usage.retries += 1
                delay = self._backoff.delay(attempt, retry_after, self._random_unit())
                log.info("endpoint %s: %s, retry %d in %.2fs", settings.name, last_error, attempt, delay)
                await self._sleep(delay)
        self.usage.failed += 1
        raise TransientAnnotationError(
            f"endpoint {settings.name} unavailable after {settings.max_attempts} attempts (last: {last_error})",
            attempts=settings.max_attempts,
        )

    def _count_tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        self.usage.cost += (
            prompt_tokens * self.settings.price_per_1k_prompt_tokens
            + completion_tokens * self.settings.price_per_1k_completion_tokens
        ) / 1000
