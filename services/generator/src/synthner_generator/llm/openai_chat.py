"""The OpenAI-compatible chat API (vLLM, SGLang, TGI's Messages API, llama.cpp server, OpenAI) via ``openai``."""

from __future__ import annotations

from typing import Any

import openai
from openai import AsyncOpenAI

from synthner_generator.llm.port import (
    Completion,
    FinishReason,
    LLMError,
    LLMPermanentError,
    LLMTransientError,
    Prompt,
    is_transient_status,
)

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}
NO_KEY = "not-needed"


def _translate(exc: Exception) -> LLMError:
    """SDK errors as the port's two kinds; never their text (a server may echo the prompt)."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMTransientError("chat completion timed out")
    if isinstance(exc, openai.APIConnectionError):
        return LLMTransientError("chat completion endpoint unreachable")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        error = LLMTransientError if is_transient_status(status) else LLMPermanentError
        return error(f"chat completion answered HTTP {status}")
    return LLMPermanentError(f"chat completion failed ({type(exc).__name__})")


class OpenAIChatClient:
    """One user message with the instruction; a prefix is given in the instruction and continued by the model."""

    backend = "openai"

    def __init__(self, base_url: str, model: str, timeout_s: float, api_key: str | None = None) -> None:
        # Retries are ours (counted, with our back-off), so the SDK's own are off.
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key or NO_KEY, timeout=timeout_s, max_retries=0)
        self._model = model

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, prompt: Prompt) -> Completion:
        sampling = prompt.sampling
        options: dict[str, Any] = {"seed": prompt.seed}
        if sampling.temperature is not None:
            options["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            options["top_p"] = sampling.top_p
        if sampling.max_new_tokens is not None:
            options["max_tokens"] = sampling.max_new_tokens
        if sampling.stop:
            options["stop"] = list(sampling.stop)
        try:
            response = await self._client.chat.completions.create(
                model=self._model,
                # A prompt without instruction (continuation) sends the opening words themselves.
                messages=[{"role": "user", "content": prompt.instruction or prompt.prefix}],
                **options,
            )
        except Exception as exc:  # noqa: BLE001 - every failure becomes one of the port's two kinds
            raise _translate(exc) from None
        if not response.choices:
            raise LLMPermanentError("chat completion returned no choices")
        choice = response.choices[0]
        return Completion(choice.message.content or "", _FINISH.get(choice.finish_reason or "", "other"))

    async def aclose(self) -> None:
        await self._client.close()
