"""Prompt templates, attribute sampling, job validation, splitting and per-note planning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synthner_generator.llm import Prompt
from synthner_generator.planning import JobContext, JobRefused, derive_seed, plan_note, split, validate
from synthner_generator.prompts import PromptCatalog, UnknownPromptError
from synthner_generator.vocabulary import load_vocabularies
from synthner_shared.contracts import GenerationRequested, Mention, PromptRef

NOTE_TYPES = ["discharge_summary", "progress_note", "radiology_report", "referral_letter", "medication_list"]
PROMPT = PromptRef(name="clinical_note", version="v1")


def context(**changes: Any) -> JobContext:
    values: dict[str, Any] = {
        "catalog": PromptCatalog(),
        "vocabularies": load_vocabularies(),
        "known_labels": ["Disease", "Drug", "Procedure"],
        "external_endpoint": False,
        "prefixes": None,
        "entities_per_label": 2,
        "prefix_words": 3,
    }
    return JobContext(**{**values, **changes})


def job(**changes: Any) -> GenerationRequested:
    values: dict[str, Any] = {
        "job_id": "job-1",
        "producer": "tests",
        "count": 10,
        "language": "en",
        "note_types": NOTE_TYPES,
        "entity_labels": ["Disease"],
        "seed": 7,
        "prompt": {"name": "clinical_note", "version": "v1"},
    }
    return GenerationRequested.model_validate({**values, **changes})


@pytest.mark.parametrize("language", ["en", "es", "sv", "et"])
def test_every_language_has_every_note_type_and_renders_its_attributes(language: str) -> None:
    catalog = PromptCatalog()
    assert catalog.note_types(PROMPT, language) == set(NOTE_TYPES)
    plan = plan_note(job(language=language, mode="label_conditioned"), 0, 0, context())
    for note_type in NOTE_TYPES:
        text = catalog.render(PROMPT, language, note_type, plan.attributes, requested=plan.requested, prefix="")
        assert str(plan.attributes["age"]) in text
        assert all(f"- Disease: {m.text}" in text for m in plan.requested)
        assert "{" not in text


@pytest.mark.parametrize(
    ("prompt", "language", "message"),
    [
        (PromptRef(name="nope", version="v1"), "en", "unknown prompt template 'nope'"),
        (PromptRef(name="clinical_note", version="v9"), "en", "has no version 'v9'"),
        (PROMPT, "de", "has no language 'de'"),
    ],
)
def test_an_unknown_template_is_a_clear_error(prompt: PromptRef, language: str, message: str) -> None:
    with pytest.raises(UnknownPromptError, match=message):
        PromptCatalog().check(prompt, language, ["discharge_summary"])


def test_an_extra_prompt_directory_adds_a_template_version(tmp_path: Path) -> None:
    folder = tmp_path / "clinical_note" / "v2" / "en"
    folder.mkdir(parents=True)
    (folder / "discharge_summary.jinja").write_text("Write a discharge summary for a {{ attributes.age }}-year-old.")
    catalog = PromptCatalog(tmp_path)
    ref = PromptRef(name="clinical_note", version="v2")
    catalog.check(ref, "en", ["discharge_summary"])
    assert catalog.render(ref, "en", "discharge_summary", {"age": 40}) == "Write a discharge summary for a 40-year-old."


def test_attributes_are_reproducible_from_the_seed_and_differ_between_notes() -> None:
    first = plan_note(job(), 3, 0, context())
    assert first == plan_note(job(), 3, 0, context())
    assert first.seed == derive_seed(7, 3, 0)
    plans = [plan_note(job(), i, 0, context()) for i in range(20)]
    assert len({json.dumps(p.attributes, sort_keys=True) for p in plans}) == 20
    assert {p.note_type for p in plans} == set(NOTE_TYPES)


def test_a_vocabulary_directory_replaces_a_language(tmp_path: Path) -> None:
    vocabulary = {
        "sex": ["x"],
        "age": [30, 30],
        "specialty": ["s"],
        "diagnoses": ["d"],
        "medications": ["m"],
        "procedures": ["p"],
    }
    (tmp_path / "en.json").write_text(json.dumps(vocabulary))
    plan = plan_note(job(), 0, 0, context(vocabularies=load_vocabularies(tmp_path)))
    assert plan.attributes["age"] == 30
    assert plan.attributes["diagnoses"] == ["d"]


def test_label_conditioned_notes_take_entities_from_the_seed_lexicon_where_it_has_the_label() -> None:
    lexicon = [Mention(label="Disease", text=t) for t in ("gout", "sepsis", "croup")]
    request = job(mode="label_conditioned", entity_labels=["Disease", "Drug"], seed_lexicon=lexicon)
    plan = plan_note(request, 0, 0, context())
    diseases = [m.text for m in plan.requested if m.label == "Disease"]
    drugs = [m.text for m in plan.requested if m.label == "Drug"]
    assert len(diseases) == 2
    assert set(diseases) <= {"gout", "sepsis", "croup"}
    assert len(drugs) == 2  # from the built-in lexicon


@pytest.mark.parametrize(
    ("changes", "ctx", "message"),
    [
        ({"language": "de"}, {}, "no language 'de'"),
        ({"prompt": {"name": "nope", "version": "v1"}}, {}, "unknown prompt template"),
        ({"note_types": ["poem"]}, {}, r"no note type\(s\) \['poem'\]"),
        ({"entity_labels": ["Spaceship"]}, {}, "unknown entity label"),
        ({"mode": "prefix"}, {"external_endpoint": True, "prefixes": ["a b c"]}, "not marked internal"),
        ({"mode": "prefix"}, {}, "needs real notes"),
    ],
)
def test_invalid_jobs_are_refused_with_a_reason(changes: dict[str, Any], ctx: dict[str, Any], message: str) -> None:
    with pytest.raises(JobRefused, match=message):
        validate(job(**changes), context(**ctx))


def test_label_conditioned_mode_needs_lexicon_entries_for_each_label() -> None:
    with pytest.raises(JobRefused, match="lexicon entries for label"):
        validate(job(mode="label_conditioned", entity_labels=["Anatomy"]), context(known_labels=["Anatomy"]))


def test_prefix_mode_continues_the_opening_words_of_a_real_note() -> None:
    plan = plan_note(job(mode="prefix"), 0, 0, context(prefixes=["Paciente de 70", "Mujer de 45"]))
    assert plan.prefix in {"Paciente de 70", "Mujer de 45"}


def test_a_passage_is_read_before_the_prefix_and_leaves_the_prefix_as_it_was() -> None:
    prefixes = ["Paciente de 70", "Mujer de 45", "Varón de 33"]
    passages = ["El paciente acude con su esposa.", "Refiere dolor lumbar."]
    for index in range(6):
        alone = plan_note(job(mode="prefix"), index, 0, context(prefixes=prefixes))
        read = plan_note(job(mode="prefix"), index, 0, context(prefixes=prefixes, passages=passages))
        assert (alone.prefix, alone.passage) == (read.prefix, "")
        assert read.passage in passages
        prompt = Prompt("", read.prefix, context=read.passage)
        assert prompt.continuation() == f"{read.passage}\n\n{read.prefix}"
    assert Prompt("", "Paciente de 70").continuation() == "Paciente de 70"


def test_passages_come_from_whole_notes_with_enough_words_without_identifiers(tmp_path: Path) -> None:
    from synthner_generator.service import job_context, load_passages  # noqa: PLC0415 - builds from settings
    from synthner_generator.settings import GeneratorSettings  # noqa: PLC0415

    notes = tmp_path / "notes.jsonl"
    lines = [
        {"id": "1", "text": "Paciente de 70 años. El paciente acude con su esposa por dolor.", "entities": []},
        {"id": "2", "text": "Ernesto Rivera acude el 12 de marzo.", "entities": []},
        {"id": "3", "text": "El dolor cede.", "entities": []},
        {"id": "4", "text": "Paciente de", "entities": [], "prefix_filter": "v1"},
    ]
    notes.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert load_passages(notes, 8) == ["El paciente acude con su esposa por dolor."]
    settings = GeneratorSettings(prefix_file=notes, endpoint_zone="internal", passage_words=8)
    assert job_context(settings).passages == ["El paciente acude con su esposa por dolor."]
    with pytest.raises(ValueError, match="no note of the prefix file has half as many words"):
        job_context(settings.model_copy(update={"passage_words": 40}))


def test_a_large_job_is_split_into_bounded_parts_with_stable_ids() -> None:
    request = job(count=1000)
    parts = split(request, part_size=16, fanout=8)
    assert len(parts) == 8
    assert sum(p.count for p in parts) == 1000
    assert [p.first_index for p in parts] == list(range(0, 1000, 125))
    assert all(p.job_total == 1000 for p in parts)
    assert [p.message_id for p in parts] == [p.message_id for p in split(request, 16, 8)]
    second_level = split(parts[1], part_size=16, fanout=8)
    assert [p.first_index for p in second_level][:2] == [125, 141]
    assert sum(p.count for p in second_level) == 125
    assert split(job(count=16), part_size=16, fanout=8) == []


def test_an_endpoint_not_marked_internal_counts_as_external_and_refuses_prefix_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synthner_generator.service import job_context  # noqa: PLC0415 - only this test builds from settings
    from synthner_generator.settings import GeneratorSettings  # noqa: PLC0415

    monkeypatch.delenv("SYNTHNER_GENERATOR_ENDPOINT_ZONE", raising=False)
    real = tmp_path / "heldout_prefixes.jsonl"
    real.write_text('{"id": "heldout-1", "text": "Paciente de", "entities": [], "prefix_filter": "v1"}\n')
    unmarked = GeneratorSettings(prefix_file=real)
    assert unmarked.endpoint_zone == "external"
    with pytest.raises(JobRefused, match="not marked internal"):
        validate(job(mode="prefix"), job_context(unmarked))
    validate(job(mode="prefix"), job_context(GeneratorSettings(prefix_file=real, endpoint_zone="internal")))


def test_the_continuation_prompt_is_the_opening_words_alone() -> None:
    catalog = PromptCatalog()
    prompt = PromptRef(name="continuation", version="v1")
    catalog.check(prompt, "es", NOTE_TYPES)
    plan = plan_note(job(mode="prefix", prompt=prompt), 0, 0, context(prefixes=["Paciente de 70 años"]))
    assert catalog.render(prompt, "es", plan.note_type, plan.attributes, prefix=plan.prefix) == ""
    assert plan.prefix == "Paciente de 70"
