"""The LLM port and its adapters: TGI's native API and the OpenAI-compatible chat API."""

from synthner_generator.llm.port import (
    Completion,
    FinishReason,
    LLMClient,
    LLMError,
    LLMPermanentError,
    LLMTransientError,
    Prompt,
    complete_with_retries,
)

__all__ = [
    "Completion",
    "FinishReason",
    "LLMClient",
    "LLMError",
    "LLMPermanentError",
    "LLMTransientError",
    "Prompt",
    "complete_with_retries",
]
