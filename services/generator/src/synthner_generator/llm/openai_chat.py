"""The OpenAI-compatible API (vLLM, SGLang, TGI's Messages API, llama.cpp server, OpenAI) via ``openai``.

Instruction prompts go to the chat endpoint. A continuation prompt (no instruction, only the opening words of a
real note: Vakili's prefix prompting) must reach the model as raw text to continue, not as a user's chat message
wrapped in a chat template, so it goes to the plain completions endpoint (``/v1/completions``), which the llama.cpp
server, vLLM and SGLang serve. A server without it (404/405) gets the chat request instead, from then on.
"""

from __future__ import annotations

import logging
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
from synthner_shared.observability.llm import llm_call

log = logging.getLogger(__name__)

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}
NO_KEY = "not-needed"
NO_COMPLETIONS_ROUTE = frozenset({404, 405})


def _translate(exc: Exception, what: str = "chat completion") -> LLMError:
    """SDK errors as the port's two kinds; never their text (a server may echo the prompt)."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMTransientError(f"{what} timed out")
    if isinstance(exc, openai.APIConnectionError):
        return LLMTransientError(f"{what} endpoint unreachable")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        error = LLMTransientError if is_transient_status(status) else LLMPermanentError
        return error(f"{what} answered HTTP {status}")
    return LLMPermanentError(f"{what} failed ({type(exc).__name__})")


class OpenAIChatClient:
    """One user message with the instruction (a prefix is given in it); a continuation prompt (a prefix without
    instruction) is sent as plain text to ``/v1/completions``, or as the user message where that route is missing."""

    backend = "openai"

    def __init__(self, base_url: str, model: str, timeout_s: float, api_key: str | None = None) -> None:
        # Retries are ours (counted, with our back-off), so the SDK's own are off.
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key or NO_KEY, timeout=timeout_s, max_retries=0)
        self._model = model
        self._completions = True  # until the server answers 404/405 on /v1/completions

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
        if not prompt.instruction and prompt.prefix and self._completions:
            completion = await self._continue(prompt.continuation(), options)
            if completion is not None:
                return completion
        try:
            async with llm_call("generator", "chat", self._model) as call:
                response = await self._client.chat.completions.create(
                    model=self._model,
                    # A prompt without instruction (continuation) sends the opening words themselves.
                    messages=[{"role": "user", "content": prompt.instruction or prompt.continuation()}],
                    extra_headers=call.headers or None,
                    **options,
                )
        except Exception as exc:  # noqa: BLE001 - every failure becomes one of the port's two kinds
            raise _translate(exc) from None
        if not response.choices:
            raise LLMPermanentError("chat completion returned no choices")
        choice = response.choices[0]
        return Completion(choice.message.content or "", _FINISH.get(choice.finish_reason or "", "other"))

    async def _continue(self, text: str, options: dict[str, Any]) -> Completion | None:
        """The model's continuation of ``text`` from the completions endpoint; None when the server has none."""
        try:
            async with llm_call("generator", "text_completion", self._model) as call:
                response = await self._client.completions.create(
                    model=self._model, prompt=text, extra_headers=call.headers or None, **options
                )
        except openai.APIStatusError as exc:
            if exc.status_code not in NO_COMPLETIONS_ROUTE:
                raise _translate(exc, "completion") from None
            log.info("the endpoint has no /v1/completions (HTTP %d): continuations go to chat", exc.status_code)
            self._completions = False
            return None
        except Exception as exc:  # noqa: BLE001 - every failure becomes one of the port's two kinds
            raise _translate(exc, "completion") from None
        if not response.choices:
            raise LLMPermanentError("completion returned no choices")
        choice = response.choices[0]
        return Completion(choice.text or "", _FINISH.get(choice.finish_reason or "", "other"))

    async def aclose(self) -> None:
        await self._client.close()
