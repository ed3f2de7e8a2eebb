"""The generator's domain core against the local LLM server: every note ends as exactly one counted outcome."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from synthner_generator.service import build_generator, load_prefixes
from synthner_generator.testing import LLMRequest, Reply, default_reply, local_llm_server, settings_for
from synthner_generator.testing import sample_job as job
from synthner_shared.contracts import (
    Envelope,
    GenerationFailed,
    GenerationProgress,
    GenerationRequested,
    NoteGenerated,
    NoteQuarantined,
)
from synthner_shared.ngrams import NgramReference

E = TypeVar("E", bound=Envelope)


def of_type(messages: Sequence[Envelope], cls: type[E]) -> list[E]:
    return [m for m in messages if isinstance(m, cls)]


def progress(messages: Sequence[Envelope], event: str) -> GenerationProgress:
    (found,) = [m for m in of_type(messages, GenerationProgress) if m.event == event]
    return found


async def test_a_free_job_yields_synthetic_notes_with_full_provenance(tmp_path: Path) -> None:
    async with local_llm_server() as server, build_generator(settings_for(server.url, tmp_path)) as generator:
        outputs = await generator.handle(job(count=3))
    notes = of_type(outputs, NoteGenerated)
    assert len(notes) == 3
    assert progress(outputs, "accepted").requested == 3
    part = progress(outputs, "part")
    assert (part.requested, part.generated) == (3, 3)
    note = notes[0]
    assert note.provenance == "synthetic"
    assert note.leak_check.status == "unchecked"  # no leak reference configured: not every check ran
    assert note.generation.backend == "openai"
    assert note.generation.model == "test-model"
    assert note.generation.prompt.version == "v1"
    assert {"age", "sex", "specialty", "diagnoses", "medications", "note_index"} <= set(note.generation.attributes)
    assert {n.note_type for n in notes} == {"discharge_summary", "radiology_report"}
    assert len({n.generation.seed for n in notes}) == 3


async def test_label_conditioned_notes_carry_and_count_their_requested_entities(tmp_path: Path) -> None:
    async with local_llm_server() as server, build_generator(settings_for(server.url, tmp_path)) as generator:
        outputs = await generator.handle(job(count=2, mode="label_conditioned", entity_labels=["Disease", "Drug"]))
    for note in of_type(outputs, NoteGenerated):
        assert {m.label for m in note.requested_entities} == {"Disease", "Drug"}
        assert note.generation.attributes["requested_total"] == 4
        assert note.generation.attributes["requested_found"] == 4  # the test server writes them all


async def test_prefix_notes_start_with_the_real_opening_words(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    real.write_text(
        '{"id": "r1", "text": "Paciente varón de edad avanzada; el paciente refiere disnea.", "entities": []}\n'
    )
    async with local_llm_server() as server:
        settings = settings_for(server.url, tmp_path, prefix_file=real)
        async with build_generator(settings) as generator:
            outputs = await generator.handle(job(count=1, mode="prefix", language="es"))
    (note,) = of_type(outputs, NoteGenerated)
    assert note.text.startswith("Paciente varón de ")
    assert 'continúa a partir de ellas: "Paciente varón de"' in server.requests[0].prompt


def test_prefixes_from_whole_notes_are_cut_before_identifiers_and_filtered_ones_kept(tmp_path: Path) -> None:
    notes = tmp_path / "notes.jsonl"
    lines = [
        {
            "id": "a",
            "text": "Nombre: Ernesto.\nNHC: 368503.\nPaciente de 70 años, el paciente refiere dolor.",
            "entities": [],
        },
        {"id": "b", "text": "Ernesto Rivera acude a consulta por dolor torácico.", "entities": []},
        {"id": "c", "text": "Control el 12 de marzo por dolor, control estable.", "entities": []},
    ]
    notes.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert load_prefixes(notes, 3) == ["Paciente de", "Control el"]
    cut = tmp_path / "heldout_prefixes.jsonl"
    cut.write_text('{"id": "h1", "text": "Lactante de", "entities": [], "prefix_filter": "v1"}\n', encoding="utf-8")
    assert load_prefixes(cut, 3) == ["Lactante de"]


async def test_prefix_jobs_are_refused_for_an_external_endpoint_before_any_llm_call(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    real.write_text('{"id": "r1", "text": "Paciente de 70 años.", "entities": []}\n')
    async with local_llm_server() as server:
        settings = settings_for(server.url, tmp_path, prefix_file=real, endpoint_zone="external")
        async with build_generator(settings) as generator:
            outputs = await generator.handle(job(count=5, mode="prefix", language="es"))
    assert server.requests == []
    (failed,) = of_type(outputs, GenerationFailed)
    assert "external" in failed.reason
    assert progress(outputs, "refused").requested == 5


async def test_a_failing_llm_ends_as_generation_failed_for_each_note(tmp_path: Path) -> None:
    async with (
        local_llm_server(fail_next=[503] * 100) as server,
        build_generator(settings_for(server.url, tmp_path)) as generator,
    ):
        outputs = await generator.handle(job(count=2))
    failures = of_type(outputs, GenerationFailed)
    assert sorted(f.note_index or 0 for f in failures) == [0, 1]
    assert all(f.attempts == 2 and "HTTP 503" in f.reason for f in failures)
    assert progress(outputs, "part").failed == 2


async def test_empty_truncated_and_duplicate_replies_are_counted_not_published(tmp_path: Path) -> None:
    replies = {0: Reply(""), 1: Reply("x " * 100, "length")}

    def reply(request: LLMRequest) -> Reply:
        index = len(server.requests) - 1
        return replies.get(index, Reply("The same note every time. " * 5))

    async with local_llm_server(reply=reply) as server:
        settings = settings_for(server.url, tmp_path, concurrency=1, regenerate_rejected=0)
        async with build_generator(settings) as generator:
            outputs = await generator.handle(job(count=4))
    part = progress(outputs, "part")
    assert (part.rejected, part.generated, part.duplicates) == (2, 1, 1)
    assert len(of_type(outputs, NoteGenerated)) == 1


async def test_a_truncated_reply_is_kept_to_its_last_whole_sentence_when_configured(tmp_path: Path) -> None:
    whole = "Patient admitted with pneumonia. Treated with amoxicillin for seven days."
    replies = [Reply(whole + " Discharged home with a follow-up appoin", "length"), Reply("x " * 100, "length")]

    async with local_llm_server(reply=lambda r: replies[len(server.requests) - 1]) as server:
        settings = settings_for(
            server.url, tmp_path, concurrency=1, regenerate_rejected=0, truncated="whole_sentences", min_chars=20
        )
        async with build_generator(settings) as generator:
            outputs = await generator.handle(job(count=2))
    (note,) = of_type(outputs, NoteGenerated)
    assert note.text == whole
    assert note.generation.attributes["cut_at_sentence"] == 1
    part = progress(outputs, "part")
    assert (part.generated, part.rejected) == (1, 1)  # the reply without a whole sentence is still rejected


async def test_a_rejected_reply_is_regenerated_with_a_new_seed(tmp_path: Path) -> None:
    def reply(request: LLMRequest) -> Reply:
        return Reply("") if len(server.requests) == 1 else default_reply(request)

    async with local_llm_server(reply=reply) as server:
        settings = settings_for(server.url, tmp_path, concurrency=1, regenerate_rejected=1)
        async with build_generator(settings) as generator:
            outputs = await generator.handle(job(count=1))
    (note,) = of_type(outputs, NoteGenerated)
    assert note.generation.attributes["attempt"] == 1
    assert server.requests[0].seed != server.requests[1].seed


async def test_notes_failing_the_leak_gate_are_quarantined_with_the_reason(tmp_path: Path) -> None:
    memorised = "the quick brown fox jumps over the lazy dog while the old doctor writes a very long letter home"
    reference = NgramReference.build([f"Real note: {memorised} and more."], n=8)
    reference.save(tmp_path / "ref.npz")
    answers = [f"Patient seen today. {memorised}. " * 2, "Contact the patient at anna@example.org. " * 3]

    async with local_llm_server(reply=lambda r: Reply(answers[len(server.requests) - 1])) as server:
        settings = settings_for(server.url, tmp_path, leak_reference=tmp_path / "ref.npz", concurrency=1)
        async with build_generator(settings) as generator:
            outputs = await generator.handle(job(count=2))
    quarantined = of_type(outputs, NoteQuarantined)
    assert len(quarantined) == 2
    reasons = [" ".join(q.leak_check.reasons) for q in quarantined]
    assert any("ngram_memorisation" in r for r in reasons)
    assert any("email: " in r for r in reasons)
    assert of_type(outputs, NoteGenerated) == []
    assert progress(outputs, "part").quarantined == 2


async def test_a_large_job_becomes_parts_without_any_llm_call(tmp_path: Path) -> None:
    async with local_llm_server() as server, build_generator(settings_for(server.url, tmp_path)) as generator:
        outputs = await generator.handle(job(count=10))
        parts = of_type(outputs, GenerationRequested)
        assert server.requests == []
        assert [(p.first_index, p.count) for p in parts] == [(0, 4), (4, 4), (8, 2)]
        part_outputs = await generator.handle(parts[2])
    assert not [m for m in of_type(part_outputs, GenerationProgress) if m.event == "accepted"]
    assert progress(part_outputs, "part").first_index == 8
    assert sorted(n.generation.attributes["note_index"] for n in of_type(part_outputs, NoteGenerated)) == [8, 9]


async def test_a_redelivered_part_regenerates_the_same_notes_instead_of_rejecting_them(tmp_path: Path) -> None:
    async with local_llm_server() as server, build_generator(settings_for(server.url, tmp_path)) as generator:
        part = job(count=3, first_index=4, job_total=9)
        first = await generator.handle(part)
        again = await generator.handle(part)  # as after a crash before the ack
    assert progress(again, "part").generated == 3
    assert [n.note_id for n in of_type(first, NoteGenerated)] == [n.note_id for n in of_type(again, NoteGenerated)]
    assert progress(first, "part").message_id == progress(again, "part").message_id


async def test_an_unexpected_error_fails_the_whole_part_so_the_runner_retries_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    async with local_llm_server() as server, build_generator(settings_for(server.url, tmp_path)) as generator:
        monkeypatch.setattr(generator._dedup, "admit", broken)
        with pytest.raises(sqlite3.OperationalError):
            await generator.handle(job(count=3))
