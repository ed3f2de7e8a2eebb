"""Both LLM adapters against the local wire-compatible server (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import asyncio

import huggingface_hub.constants
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from synthner_generator.llm import LLMPermanentError, LLMTransientError, Prompt, complete_with_retries
from synthner_generator.llm.openai_chat import OpenAIChatClient
from synthner_generator.llm.tgi import TgiClient
from synthner_generator.testing import LLMRequest, Reply, default_reply, local_llm_server
from synthner_shared.contracts import SamplingParameters
from synthner_shared.observability import tracing
from synthner_shared.observability.metrics import LLM_REQUEST_ERRORS, LLM_REQUEST_SECONDS

SAMPLING = SamplingParameters(temperature=0.7, top_p=0.9, max_new_tokens=300, stop=["###"])
PROMPT = Prompt("Write a discharge summary.", sampling=SAMPLING, seed=42)


async def test_tgi_sends_the_native_generate_parameters_and_reads_the_finish_reason() -> None:
    async with local_llm_server(reply=lambda r: Reply("Note text.", "length")) as server:
        client = TgiClient(server.url, "tgi-model", timeout_s=10, grammar={"type": "regex", "value": ".+"})
        try:
            completion = await client.complete(PROMPT)
        finally:
            await client.aclose()
    assert completion.text == "Note text."
    assert completion.finish_reason == "length"
    (request,) = server.requests
    assert request.path == "/generate"
    assert request.prompt == "Write a discharge summary."
    assert request.seed == 42
    assert request.parameters["temperature"] == 0.7
    assert request.parameters["top_p"] == 0.9
    assert request.parameters["max_new_tokens"] == 300
    assert request.parameters["stop"] == ["###"]
    assert request.parameters["grammar"] == {"type": "regex", "value": ".+"}
    assert request.parameters["details"] is True
    assert request.parameters["do_sample"] is True


async def test_tgi_reaches_its_endpoint_when_hub_offline_mode_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # Air-gapped sites set HF_HUB_OFFLINE=1; it must block the Hub, not the hospital's own TGI server.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert huggingface_hub.constants.is_offline_mode()
    async with local_llm_server(reply=lambda r: Reply("Offline fine.", "stop")) as server:
        client = TgiClient(server.url, "m", timeout_s=10)
        try:
            completion = await client.complete(PROMPT)
        finally:
            await client.aclose()
    assert completion.text == "Offline fine."


async def test_tgi_appends_a_prefix_so_the_model_continues_it() -> None:
    async with local_llm_server() as server:
        client = TgiClient(server.url, "m", timeout_s=10)
        try:
            await client.complete(Prompt("Continue the note.", prefix="Paciente de 70", seed=1))
        finally:
            await client.aclose()
    assert server.requests[0].prompt.endswith("\n\nPaciente de 70")


async def test_openai_chat_sends_the_sampling_parameters_and_reads_the_reply() -> None:
    async with local_llm_server(reply=lambda r: Reply("Chat note.")) as server:
        client = OpenAIChatClient(f"{server.url}/v1", "chat-model", timeout_s=10)
        try:
            completion = await client.complete(PROMPT)
        finally:
            await client.aclose()
    assert completion.text == "Chat note."
    assert completion.finish_reason == "stop"
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.seed == 42
    assert request.parameters["model"] == "chat-model"
    assert request.parameters["temperature"] == 0.7
    assert request.parameters["top_p"] == 0.9
    assert request.parameters["max_tokens"] == 300
    assert request.parameters["stop"] == ["###"]


@pytest.mark.parametrize("backend", ["tgi", "openai"])
async def test_server_errors_are_transient_and_client_errors_permanent(backend: str) -> None:
    async with local_llm_server(fail_next=[503, 422]) as server:
        client = TgiClient(server.url, "m", 10) if backend == "tgi" else OpenAIChatClient(f"{server.url}/v1", "m", 10)
        try:
            with pytest.raises(LLMTransientError):
                await client.complete(PROMPT)
            with pytest.raises(LLMPermanentError):
                await client.complete(PROMPT)
        finally:
            await client.aclose()


@pytest.mark.parametrize("backend", ["tgi", "openai"])
async def test_an_unreachable_endpoint_is_transient(backend: str) -> None:
    async with local_llm_server() as server:
        url = server.url
    client = TgiClient(url, "m", 5) if backend == "tgi" else OpenAIChatClient(f"{url}/v1", "m", 5)
    try:
        with pytest.raises(LLMTransientError):
            await client.complete(PROMPT)
    finally:
        await client.aclose()


async def test_transient_errors_are_retried_and_permanent_ones_are_not() -> None:
    async with local_llm_server(fail_next=[503, 500]) as server:
        client = OpenAIChatClient(f"{server.url}/v1", "m", 10)
        try:
            limit = asyncio.Semaphore(1)
            retried = await complete_with_retries(client, PROMPT, attempts=3, backoff_s=[0.01], limit=limit)
            assert retried.completion is not None
            assert retried.attempts == 3
            server.fail_next = [400]
            refused = await complete_with_retries(client, PROMPT, attempts=3, backoff_s=[0.01], limit=limit)
            assert refused.completion is None
            assert refused.attempts == 1
            assert isinstance(refused.error, LLMPermanentError)
        finally:
            await client.aclose()


def test_the_default_reply_echoes_requested_entities() -> None:
    text = default_reply(LLMRequest("/generate", "Write.\n- Disease: gout", 1, {})).text
    assert "gout" in text


async def test_tgi_sends_only_the_opening_words_for_a_prompt_without_instruction() -> None:
    async with local_llm_server() as server:
        client = TgiClient(server.url, "m", timeout_s=10)
        try:
            await client.complete(Prompt("", prefix="Paciente de 70", seed=1))
        finally:
            await client.aclose()
    assert server.requests[0].prompt == "Paciente de 70"


async def test_openai_sends_a_continuation_prompt_as_plain_text_to_the_completions_endpoint() -> None:
    continuation = Prompt("", "Paciente varón de", SAMPLING, seed=7)
    async with local_llm_server(reply=lambda r: Reply(" 45 años que acude por disnea.", "length")) as server:
        client = OpenAIChatClient(f"{server.url}/v1", "adapted", timeout_s=10)
        try:
            completion = await client.complete(continuation)
            await client.complete(PROMPT)  # an instruction still goes to chat
        finally:
            await client.aclose()
    assert completion.text == " 45 años que acude por disnea."
    assert completion.finish_reason == "length"
    first, second = server.requests
    assert first.path == "/v1/completions"
    assert first.prompt == "Paciente varón de"  # exactly the opening words: no chat template, no instruction
    assert first.seed == 7
    assert first.parameters["max_tokens"] == 300
    assert first.parameters["stop"] == ["###"]
    assert second.path == "/v1/chat/completions"


@pytest.mark.parametrize("backend", ["openai", "tgi"])
async def test_a_passage_goes_before_the_opening_words_in_the_text_to_continue(backend: str) -> None:
    primed = Prompt("", "Paciente varón de", SAMPLING, seed=7, context="El paciente acude con su esposa.")
    async with local_llm_server() as server:
        client = TgiClient(server.url, "m", 10) if backend == "tgi" else OpenAIChatClient(f"{server.url}/v1", "m", 10)
        try:
            await client.complete(primed)
        finally:
            await client.aclose()
    assert server.requests[0].prompt == "El paciente acude con su esposa.\n\nPaciente varón de"


async def test_openai_falls_back_to_chat_once_a_server_has_no_completions_endpoint() -> None:
    continuation = Prompt("", "Paciente varón de", SAMPLING, seed=7)
    async with local_llm_server(completions=False) as server:
        client = OpenAIChatClient(f"{server.url}/v1", "chat-only", timeout_s=10)
        try:
            await client.complete(continuation)
            await client.complete(continuation)
        finally:
            await client.aclose()
    assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2
    assert server.requests[0].prompt == "Paciente varón de"


async def test_completions_endpoint_errors_are_typed_like_chat_errors() -> None:
    continuation = Prompt("", "Paciente varón de", SAMPLING, seed=7)
    async with local_llm_server(fail_next=[503, 400]) as server:
        client = OpenAIChatClient(f"{server.url}/v1", "adapted", timeout_s=10)
        try:
            with pytest.raises(LLMTransientError, match="completion answered HTTP 503"):
                await client.complete(continuation)
            with pytest.raises(LLMPermanentError, match="completion answered HTTP 400"):
                await client.complete(continuation)
        finally:
            await client.aclose()


@pytest.mark.parametrize("backend", ["openai", "tgi"])
async def test_each_llm_request_is_a_client_span_whose_context_reaches_the_server(backend: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable_tracing(provider)
    try:
        async with local_llm_server() as server:
            client = (
                OpenAIChatClient(f"{server.url}/v1", "m", 10) if backend == "openai" else TgiClient(server.url, "m", 10)
            )
            try:
                await client.complete(PROMPT)
            finally:
                await client.aclose()
    finally:
        tracing.disable_tracing()
    (span,) = exporter.get_finished_spans()
    assert span.kind == SpanKind.CLIENT
    assert span.context is not None
    (traceparent,) = server.traceparents
    assert traceparent is not None
    assert traceparent.split("-")[1:3] == [format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")]
    assert PROMPT.instruction not in str(span.attributes)


async def test_llm_request_durations_and_errors_are_in_the_metrics() -> None:
    errors = LLM_REQUEST_ERRORS.labels(client="generator", kind="http_503")
    before = errors._value.get()
    async with local_llm_server(fail_next=[503]) as server:
        client = OpenAIChatClient(f"{server.url}/v1", "m", 10)
        try:
            with pytest.raises(LLMTransientError):
                await client.complete(PROMPT)
            await client.complete(PROMPT)
        finally:
            await client.aclose()
    assert server.traceparents == [None, None]  # tracing off: no trace context sent
    assert errors._value.get() == before + 1
    assert LLM_REQUEST_SECONDS.labels(client="generator", outcome="ok")._sum.get() > 0
