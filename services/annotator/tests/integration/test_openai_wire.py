"""The OpenAI-compatible path against a real HTTP server on 127.0.0.1 that follows OpenAI's documented
chat-completions schema: structured output, 429 with Retry-After, errors, malformed replies, long notes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from synthner_annotator.backends.base import AnnotationRequest
from synthner_annotator.backends.ensemble import EnsembleAnnotator, EnsembleMember, EnsembleSettings
from synthner_annotator.backends.lexicon import LexiconAnnotator, LexiconSettings
from synthner_annotator.backends.llm import LLMAnnotator, LLMAnnotatorSettings
from synthner_annotator.endpoint import ChatEndpoint, EndpointSettings
from synthner_annotator.errors import EgressRefused, MalformedReply, PermanentAnnotationError, TransientAnnotationError
from synthner_annotator.prompts import PromptSettings
from synthner_annotator.testing import (
    Answer,
    checked_egress,
    constant,
    lexicon_oracle,
    openai_compatible_server,
    sequence,
    user_text,
)

LABELS = ["Disease", "Drug"]
TEXT = "Known asthma, on salbutamol. Asthma worse at night."


def request(text: str = TEXT, provenance: str = "synthetic", leak: str = "passed") -> AnnotationRequest:
    return AnnotationRequest("a" * 64, text, "en", provenance, leak)  # type: ignore[arg-type]


class RecordedSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def annotator(base_url: str, sleep: RecordedSleep | None = None, **options: Any) -> LLMAnnotator:
    endpoint_options = {k: options.pop(k) for k in list(options) if k in EndpointSettings.model_fields}
    endpoint = EndpointSettings(base_url=base_url, model="gpt-test", api_key=SecretStr("sk-test"), **endpoint_options)
    settings = LLMAnnotatorSettings(endpoint=endpoint, **options)
    return LLMAnnotator(
        settings,
        LABELS,
        ChatEndpoint(endpoint, sleep=sleep or RecordedSleep(), random_unit=lambda: 1.0),
        egress=checked_egress(),
    )


async def test_json_design_sends_the_schema_and_aligns_the_reply() -> None:
    reply = json.dumps(
        {
            "mentions": [
                {"label": "Disease", "text": "asthma"},
                {"label": "Drug", "text": "Salbutamol"},
                {"label": "Disease", "text": "asthma"},
                {"label": "Disease", "text": "pneumonia"},
            ]
        }
    )
    async with openai_compatible_server(constant(reply)) as server:
        llm = annotator(server.base_url)
        try:
            result = await llm.annotate(request())
        finally:
            await llm.aclose()
    assert [(TEXT[s.start : s.end], s.label) for s in result.spans] == [
        ("asthma", "Disease"),
        ("salbutamol", "Drug"),
        ("Asthma", "Disease"),
    ]
    assert result.report.stats().model_dump() == {"mentions_found": 4, "mentions_aligned": 3, "mentions_dropped": 1}
    sent = server.requests[0]
    assert sent["model"] == "gpt-test"
    assert sent["temperature"] == 0
    assert sent["response_format"]["type"] == "json_schema"
    schema = sent["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["required"] == ["mentions"]
    assert server.headers[0]["authorization"] == "Bearer sk-test"
    assert result.record.prompt is not None
    assert result.record.prompt.name == "json_mentions"
    assert llm.usage()["llm"]["requests"] == 1
    assert llm.usage()["llm"]["prompt_tokens"] > 0


async def test_429_with_retry_after_is_honoured_then_succeeds() -> None:
    script = sequence(
        Answer.error(429, retry_after=7, error_type="rate_limit_exceeded"),
        Answer.error(503),
        Answer('{"mentions": []}'),
    )
    sleep = RecordedSleep()
    async with openai_compatible_server(script) as server:
        llm = annotator(server.base_url, sleep, backoff_initial_s=0.5)
        try:
            result = await llm.annotate(request())
        finally:
            await llm.aclose()
    assert result.spans == []
    assert sleep.delays == [7.0, 1.0]  # Retry-After, then exponential back-off (attempt 2, full jitter unit)
    assert len(server.requests) == 3
    assert llm.endpoint.usage.rate_limited == 1
    assert llm.endpoint.usage.retries == 2


async def test_endpoint_down_for_every_attempt_is_transient() -> None:
    async with openai_compatible_server(constant("")) as server:
        base_url = server.base_url
    llm = annotator(base_url, max_attempts=2, timeout_s=5)
    try:
        with pytest.raises(TransientAnnotationError, match="unavailable after 2 attempts"):
            await llm.annotate(request())
    finally:
        await llm.aclose()


async def test_a_server_slower_than_the_timeout_is_transient() -> None:
    async with openai_compatible_server(constant('{"mentions": []}'), latency_s=2.0) as server:
        llm = annotator(server.base_url, max_attempts=1, timeout_s=0.2)
        try:
            with pytest.raises(TransientAnnotationError, match="APITimeoutError"):
                await llm.annotate(request())
        finally:
            await llm.aclose()


async def test_client_error_is_permanent() -> None:
    async with openai_compatible_server(sequence(Answer.error(400, error_type="invalid_request_error"))) as server:
        llm = annotator(server.base_url)
        try:
            with pytest.raises(PermanentAnnotationError, match="HTTP 400"):
                await llm.annotate(request())
        finally:
            await llm.aclose()


async def test_malformed_replies_are_retried_then_fail_with_the_reason() -> None:
    async with openai_compatible_server(constant("Sorry, I can't do that.")) as server:
        llm = annotator(server.base_url, malformed_retries=2)
        try:
            with pytest.raises(MalformedReply, match="3 replies could not be parsed") as failure:
                await llm.annotate(request())
        finally:
            await llm.aclose()
    assert len(server.requests) == 3
    assert failure.value.attempts == 3


async def test_a_malformed_reply_then_a_good_one_succeeds() -> None:
    script = sequence(Answer("{oops"), Answer('{"mentions": [{"label": "Drug", "text": "salbutamol"}]}'))
    async with openai_compatible_server(script) as server:
        llm = annotator(server.base_url)
        try:
            result = await llm.annotate(request())
        finally:
            await llm.aclose()
    assert [s.label for s in result.spans] == ["Drug"]


async def test_egress_guard_refuses_before_any_call() -> None:
    async with openai_compatible_server(constant('{"mentions": []}')) as server:
        llm = annotator(server.base_url)
        try:
            with pytest.raises(EgressRefused, match="only synthetic notes"):
                await llm.annotate(request(provenance="real"))
        finally:
            await llm.aclose()
        internal = annotator(server.base_url, external=False)
        try:
            await internal.annotate(request(provenance="real", leak="unchecked"))
        finally:
            await internal.aclose()
    assert len(server.requests) == 1  # only the internal endpoint was called


async def test_inline_markup_design_with_altered_text() -> None:
    async def script(body: dict[str, Any]) -> Answer:
        assert "response_format" not in body
        return Answer("Known <Disease>Asthma</Disease>; on <Drug>salbutamol</Drug>. Asthma worse at night!")

    async with openai_compatible_server(script) as server:
        llm = annotator(server.base_url, prompt=PromptSettings(name="inline_markup"))
        try:
            result = await llm.annotate(request())
        finally:
            await llm.aclose()
    assert [(TEXT[s.start : s.end], s.start) for s in result.spans] == [("asthma", 6), ("salbutamol", 17)]


async def test_long_note_is_chunked_and_merged_without_duplicates() -> None:
    text = " ".join(f"Visit {i}: asthma stable, salbutamol continued." for i in range(60))
    async with openai_compatible_server(lexicon_oracle({"asthma": "Disease", "salbutamol": "Drug"})) as server:
        llm = annotator(server.base_url, chunk_chars=600, chunk_overlap_chars=120)
        try:
            result = await llm.annotate(request(text))
        finally:
            await llm.aclose()
    assert len(server.requests) > 4
    assert max(len(user_text(r)) for r in server.requests) <= 600
    assert [text[s.start : s.end] for s in result.spans] == ["asthma", "salbutamol"] * 60
    stats = result.report.stats()
    assert stats.mentions_aligned == 120
    assert stats.mentions_found == stats.mentions_aligned + stats.mentions_dropped


async def test_ensemble_of_llm_and_lexicon_votes_and_records_agreement() -> None:
    reply = json.dumps({"mentions": [{"label": "Disease", "text": "asthma"}, {"label": "Drug", "text": "salbutamol"}]})
    async with openai_compatible_server(constant(reply)) as server:
        llm = annotator(server.base_url)
        lexicon_settings = LexiconSettings(terms={"Disease": ["asthma"]})
        settings = EnsembleSettings(
            members=[
                EnsembleMember(weight=1.0, annotator=llm.settings),
                EnsembleMember(weight=1.5, annotator=lexicon_settings),
            ]
        )
        ensemble = EnsembleAnnotator(settings, [(1.0, llm), (1.5, LexiconAnnotator(lexicon_settings, LABELS))])
        try:
            result = await ensemble.annotate(request())
        finally:
            await ensemble.aclose()
    # asthma: both (share 1.0); salbutamol: llm only (0.4); second Asthma: lexicon only (0.6 > 0.5)
    assert [(TEXT[s.start : s.end], s.score) for s in result.spans] == [("asthma", 1.0), ("Asthma", 0.6)]
    assert result.agreement == pytest.approx(0.5)  # one span in common out of two each
    assert set(result.members) == {"llm", "lexicon"}
    assert result.record.backend == "ensemble"
