"""Message contracts: envelope defaults, span invariants in DocumentAnnotated, decoding by type and version."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from synthner_shared.contracts import (
    MESSAGE_CLASSES,
    DatasetManifest,
    DocumentAnnotated,
    EntitySpan,
    GenerationRequested,
    MessageDecodeError,
    NoteGenerated,
    PromptRef,
    UnknownMessageType,
    UnsupportedSchemaVersion,
    content_id,
    decode_message,
    describe_validation_error,
    field_names,
)
from synthner_shared.contracts.registry import MAX_PROBLEMS
from synthner_shared.testing import sample_annotated, sample_note


def annotated(
    text: str, spans: list[tuple[int, int, str]], labels: tuple[str, ...] = ("Disease", "Drug")
) -> dict[str, object]:
    document = sample_annotated().model_dump(mode="json")
    document.update(
        text=text,
        note_id=content_id(text),
        labels=list(labels),
        entities=[{"start": s, "end": e, "label": label} for s, e, label in spans],
    )
    return document


def test_every_message_round_trips_through_json_with_its_routing_key() -> None:
    for message in (sample_note(), sample_annotated()):
        decoded = decode_message(message.model_dump_json().encode())
        assert decoded == message
        assert type(decoded).routing_key == message.routing_key


def test_each_message_class_has_a_distinct_type_and_routing_key() -> None:
    types = [cls.model_fields["type"].default for cls in MESSAGE_CLASSES]
    keys = [cls.routing_key for cls in MESSAGE_CLASSES]
    assert len(set(types)) == len(types)
    assert len(set(keys)) == len(keys)


def test_envelope_fills_message_id_and_an_aware_timestamp() -> None:
    first, second = sample_note(1), sample_note(1)
    assert first.message_id != second.message_id
    assert first.created_at.tzinfo is not None


def test_annotated_document_accepts_sorted_adjacent_spans_with_code_point_offsets() -> None:
    text = "Café 🙂 diabetes\r\nand asthma"
    start = text.index("diabetes")
    spans = [(0, 4, "Disease"), (start, start + 8, "Disease"), (text.index("asthma"), len(text), "Drug")]
    document = DocumentAnnotated.model_validate(annotated(text, spans))
    assert [text[e.start : e.end] for e in document.entities] == ["Café", "diabetes", "asthma"]


@pytest.mark.parametrize(
    ("spans", "rule"),
    [
        ([(5, 3, "Disease")], "non-empty span inside the text"),
        ([(2, 2, "Disease")], "non-empty span inside the text"),
        ([(0, 99, "Disease")], "non-empty span inside the text"),
        ([(0, 4, "Symptom")], "outside the declared label set"),
        ([(6, 10, "Disease"), (0, 4, "Disease")], "must be sorted"),
        ([(0, 6, "Disease"), (4, 10, "Drug")], "overlaps"),
    ],
)
def test_annotated_document_rejects_broken_spans(spans: list[tuple[int, int, str]], rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        DocumentAnnotated.model_validate(annotated("fever and cough", spans))


def test_annotated_document_rejects_a_note_id_that_is_not_the_text_hash() -> None:
    document = annotated("fever", [])
    document["note_id"] = content_id("something else")
    with pytest.raises(ValidationError, match="SHA-256"):
        DocumentAnnotated.model_validate(document)


def test_utf16_offsets_are_caught_as_out_of_bounds_for_astral_characters() -> None:
    text = "🙂🙂 flu"  # 'flu' starts at code point 3 but UTF-16 unit 5
    with pytest.raises(ValidationError):
        DocumentAnnotated.model_validate(annotated(text, [(5, 8, "Disease")]))
    assert DocumentAnnotated.model_validate(annotated(text, [(3, 6, "Disease")])).entities[0].end == 6


def test_messages_are_immutable_and_forbid_unknown_fields() -> None:
    note = sample_note()
    with pytest.raises(ValidationError):
        note.text = "changed"  # type: ignore[misc]
    raw = json.loads(note.model_dump_json())
    raw["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        NoteGenerated.model_validate(raw)


def test_generation_request_correlates_with_its_job_and_checks_its_lexicon() -> None:
    request = GenerationRequested(
        job_id="job-7",
        producer="cli",
        count=10,
        language="en",
        note_types=["discharge_summary"],
        entity_labels=["Disease"],
        seed=1,
        prompt=PromptRef(name="discharge_summary", version="v1"),
    )
    assert request.correlation_id == "job-7"
    with pytest.raises(ValidationError, match="correlation_id must equal job_id"):
        GenerationRequested.model_validate({**request.model_dump(), "correlation_id": "other"})
    with pytest.raises(ValidationError, match="outside entity_labels"):
        GenerationRequested.model_validate(
            {**request.model_dump(), "seed_lexicon": [{"label": "Drug", "text": "aspirin"}]}
        )


def test_decode_rejects_unknown_type_and_unsupported_version_without_echoing_values() -> None:
    with pytest.raises(UnknownMessageType):
        decode_message(b'{"type": "Nope", "schema_version": 1}')
    with pytest.raises(UnsupportedSchemaVersion, match=r"supported: \[1\]"):
        decode_message(b'{"type": "NoteGenerated", "schema_version": 2}')
    raw = json.loads(sample_note().model_dump_json())
    raw["note_id"] = "PATIENT-NAME-JOHN-DOE"
    with pytest.raises(MessageDecodeError) as caught:
        decode_message(json.dumps(raw).encode())
    assert "note_id" in str(caught.value)
    assert "JOHN-DOE" not in str(caught.value)


def test_decode_reasons_quote_no_type_name_field_name_or_dict_key_of_the_sender() -> None:
    canary = "PatientJaneRoe"
    with pytest.raises(UnknownMessageType) as unknown:
        decode_message(json.dumps({"type": canary * 1_000, "schema_version": 1}).encode())
    assert "unknown message type (a name of 14000 characters; known: " in str(unknown.value)
    raw = json.loads(sample_note().model_dump_json())
    with pytest.raises(MessageDecodeError) as extra:
        decode_message(json.dumps({**raw, canary: 1, "provenance": {canary: canary}}).encode())
    assert "NoteGenerated: provenance: Input should be 'synthetic' or 'real' [literal_error]" in str(extra.value)
    assert "<unknown key>: Extra inputs are not permitted [extra_forbidden]" in str(extra.value)
    for caught in (unknown, extra):
        assert canary not in str(caught.value)


def test_a_dict_key_from_the_input_is_not_quoted_in_a_validation_reason() -> None:
    manifest = {"version": "d1", "content_hash": "0" * 64, "document_count": 1, "annotators": []}
    with pytest.raises(ValidationError) as caught:
        DatasetManifest.model_validate({**manifest, "label_counts": {"PatientJaneRoe": "many"}})
    reason = describe_validation_error(caught.value, field_names(DatasetManifest))
    assert reason == (
        "DatasetManifest: label_counts.<unknown key>: Input should be a valid integer, unable to parse string as an "
        "integer [int_parsing]"
    )


def test_a_decode_reason_names_a_few_problems_and_counts_the_rest() -> None:
    with pytest.raises(MessageDecodeError) as caught:
        decode_message(b'{"type": "NoteGenerated", "schema_version": 1}')
    reason = str(caught.value)
    assert reason.count("Field required [missing]") == MAX_PROBLEMS
    assert reason.endswith(" more")


def test_decode_checks_the_accepted_types() -> None:
    with pytest.raises(UnknownMessageType, match="not handled"):
        decode_message(sample_note().model_dump_json().encode(), accepted=(DocumentAnnotated,))


def test_entity_span_rejects_an_invalid_label_name() -> None:
    with pytest.raises(ValidationError):
        EntitySpan(start=0, end=1, label="has space")
