"""The adapter for the configured backend."""

from __future__ import annotations

from synthner_generator.llm.openai_chat import OpenAIChatClient
from synthner_generator.llm.port import LLMClient
from synthner_generator.llm.tgi import TgiClient
from synthner_generator.settings import GeneratorSettings


def build_client(settings: GeneratorSettings) -> LLMClient:
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    url = str(settings.endpoint_url)
    if settings.backend == "tgi":
        return TgiClient(url, settings.model, settings.request_timeout_s, key, settings.grammar)
    return OpenAIChatClient(url, settings.model, settings.request_timeout_s, key)
