"""TGI's native ``/generate`` API through ``huggingface_hub.AsyncInferenceClient`` (the maintained TGI client)."""

from __future__ import annotations

from typing import Any

import httpx2
from huggingface_hub import AsyncInferenceClient, TextGenerationOutput
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, OverloadedError, TextGenerationError
from huggingface_hub.errors import ValidationError as TgiValidationError

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
from synthner_shared.observability.tracing import trace_request_hook

_FINISH: dict[str, FinishReason] = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}


def _status_error(status: int, what: str) -> LLMError:
    error = LLMTransientError if is_transient_status(status) else LLMPermanentError
    return error(f"TGI answered HTTP {status} ({what})")


def _translate(exc: Exception) -> LLMError:  # noqa: PLR0911 - one return per error kind reads best
    """TGI and transport errors as the port's two kinds; never their text (it may quote the prompt)."""
    if isinstance(exc, InferenceTimeoutError | httpx2.TimeoutException):
        return LLMTransientError("TGI request timed out")
    if isinstance(exc, OverloadedError):
        return LLMTransientError("TGI is overloaded")
    if isinstance(exc, TgiValidationError):
        return LLMPermanentError("TGI refused the request as invalid")
    if isinstance(exc, TextGenerationError):
        cause = exc.__cause__
        if isinstance(cause, HfHubHTTPError) and cause.response is not None:
            return _status_error(cause.response.status_code, type(exc).__name__)
        return LLMTransientError(f"TGI generation error ({type(exc).__name__})")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return _status_error(exc.response.status_code, type(exc).__name__)
    if isinstance(exc, httpx2.TransportError):
        return LLMTransientError(f"TGI connection failed ({type(exc).__name__})")
    return LLMPermanentError(f"TGI call failed ({type(exc).__name__})")


class TgiClient:
    """Plain completion: the prompt is the instruction followed by the prefix, the reply is the continuation."""

    backend = "tgi"

    def __init__(
        self,
        base_url: str,
        model: str,
        timeout_s: float,
        api_key: str | None = None,
        grammar: dict[str, Any] | None = None,
    ) -> None:
        # The client posts to base_url as given: name TGI's native route, not the compat route at the root.
        url = base_url.rstrip("/")
        url = url if url.endswith("/generate") else f"{url}/generate"
        self._client = AsyncInferenceClient(base_url=url, api_key=api_key, timeout=timeout_s)
        # huggingface_hub's own HTTP session refuses every request while HF_HUB_OFFLINE is set, which air-gapped
        # sites set so that nothing reaches a model hub. TGI is the hospital's own endpoint, not the Hub: the client
        # gets a plain session (huggingface_hub reads its content and raises its errors as before).
        # Its request hook gives each request the trace context of the call's span (nothing while tracing is off).
        self._session = httpx2.AsyncClient(timeout=None, event_hooks={"request": [trace_request_hook]})
        self._client._async_client = self._session
        self._model = model
        self._grammar = grammar

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, prompt: Prompt) -> Completion:
        sampling = prompt.sampling
        greedy = sampling.temperature == 0.0
        text = prompt.instruction.rstrip()
        if prompt.prefix:  # no instruction (the continuation prompt): the opening words, after any context
            text = f"{text}\n\n{prompt.continuation()}" if text else prompt.continuation()
        try:
            async with llm_call("generator", "text_completion", self._model):
                output = await self._client.text_generation(  # type: ignore[misc]  # overloads x optional arguments
                    text,
                    details=True,
                    stream=False,
                    return_full_text=False,
                    do_sample=not greedy,
                    seed=prompt.seed,
                    # TGI requires a strictly positive temperature; greedy decoding is do_sample=False instead.
                    temperature=None if greedy else sampling.temperature,
                    top_p=None if sampling.top_p == 1.0 else sampling.top_p,
                    max_new_tokens=sampling.max_new_tokens,
                    stop=list(sampling.stop) or None,
                    grammar=self._grammar,  # type: ignore[arg-type]  # the client accepts the documented dict form
                )
        except Exception as exc:  # noqa: BLE001 - every failure becomes one of the port's two kinds
            raise _translate(exc) from None
        if not isinstance(output, TextGenerationOutput):
            raise LLMPermanentError(f"TGI reply has no details ({type(output).__name__})")
        details = output.details
        finish = _FINISH.get(details.finish_reason, "other") if details is not None else "other"
        return Completion(output.generated_text, finish)

    async def aclose(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
        await self._session.aclose()
