"""The Label Studio round trip: machine labels out as ``predictions``, completed tasks back as reviewed documents.

Task and annotation JSON follow Label Studio's documented task format (``data``, ``predictions`` with
``model_version``/``score``/``result``, ``annotations`` with ``result``, ``was_cancelled``, ``completed_by``,
``created_at``/``updated_at``); its JSON export lists a task's predictions as ids. Offsets are code points, as in
Label Studio's own NER emoji test (``"🐱 Warning: This is a test text"``: "test" is start 21, end 25).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from synthner_shared.documents import Document, DocumentEntity
from synthner_shared.formats import (
    FormatError,
    from_label_studio,
    reviewed_from_label_studio,
    to_label_studio,
    to_utf16,
)

UNICODE_TEXT = "Señora 👩\u200d⚕️ con diabetes 😷; 患者は糖尿病 𠀋𠀋 y asma 🫁 grave."


def span(text: str, surface: str, label: str = "Disease", **extra: Any) -> DocumentEntity:
    start = text.index(surface)
    return DocumentEntity(start=start, end=start + len(surface), label=label, **extra)


def unicode_document() -> Document:
    entities = [span(UNICODE_TEXT, "diabetes", score=0.9), span(UNICODE_TEXT, "糖尿病", score=0.5)]
    entities.append(span(UNICODE_TEXT, "asma 🫁"))
    return Document.model_validate(
        {"id": "ü-1", "text": UNICODE_TEXT, "entities": entities, "annotator": "lexicon-v2", "split": "dev"}
    )


def region(text: str, start: int, end: int, label: str = "Disease", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"r{start}",
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "origin": "manual",
        "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]},
        **extra,
    }


def annotation(result: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """One annotation as Label Studio's JSON export writes it."""
    return {
        "id": fields.pop("id", 1001),
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": "2024-05-02T10:00:00.000000Z",
        "updated_at": "2024-05-02T10:00:00.000000Z",
        "lead_time": 4.2,
        "task": 1,
        "completed_by": 10,
        **fields,
    }


def exported(tasks: list[dict[str, Any]], annotations: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The tasks as Label Studio's JSON export returns them after review: ids, annotations, predictions as ids."""
    out = []
    for number, (task, given) in enumerate(zip(tasks, annotations, strict=True), start=1):
        out.append(
            {
                "id": number,
                "data": task["data"],
                "annotations": given,
                "predictions": [500 + number],
                "meta": {},
                "created_at": "2024-05-01T09:00:00.000000Z",
                "updated_at": "2024-05-02T10:00:00.000000Z",
                "project": 7,
            }
        )
    loaded: list[dict[str, Any]] = json.loads(json.dumps(out, ensure_ascii=False))
    return loaded


# --- export ---------------------------------------------------------------------------------------------------------


def test_export_writes_machine_labels_as_predictions_not_annotations() -> None:
    document = unicode_document()
    [task] = to_label_studio([document])
    assert "annotations" not in task  # a task with annotations counts as done in Label Studio
    assert task["data"]["id"] == "ü-1"
    assert task["data"]["text"] == UNICODE_TEXT
    assert task["data"]["document"] == {"annotator": "lexicon-v2", "split": "dev"}
    [prediction] = task["predictions"]
    assert prediction["model_version"] == "lexicon-v2"
    assert prediction["score"] == pytest.approx(0.7)  # the mean over the spans that have a score
    items = prediction["result"]
    assert [(i["from_name"], i["to_name"], i["type"]) for i in items] == [("label", "text", "labels")] * 3
    assert [i["value"]["labels"] for i in items] == [["Disease"]] * 3
    assert [i["value"]["text"] for i in items] == ["diabetes", "糖尿病", "asma 🫁"]
    assert [i.get("score") for i in items] == [0.9, 0.5, None]
    # code points, as Python counts them (and Label Studio's Text results), not UTF-16 code units
    assert [(i["value"]["start"], i["value"]["end"]) for i in items] == [(e.start, e.end) for e in document.entities]
    assert items[0]["value"]["start"] != to_utf16(UNICODE_TEXT, items[0]["value"]["start"])


def test_export_model_version_comes_from_the_document_else_the_caller() -> None:
    plain = Document(id="p", text="flu", entities=[DocumentEntity(start=0, end=3, label="Disease")])
    named = plain.model_copy(update={"id": "n"})
    named = Document.model_validate({**named.model_dump(), "model_version": "enc-7"})
    tasks = to_label_studio([plain, named], model_version="given")
    assert [t["predictions"][0]["model_version"] for t in tasks] == ["given", "enc-7"]
    assert to_label_studio([plain])[0]["predictions"][0]["model_version"] == "unknown"
    assert "score" not in tasks[0]["predictions"][0]  # no span has a score


def test_a_document_without_entities_gets_an_empty_prediction() -> None:
    [task] = to_label_studio([Document(id="e", text="Nothing found.")])
    assert task["predictions"] == [{"model_version": "unknown", "result": []}]


# --- review import --------------------------------------------------------------------------------------------------


def test_round_trip_with_unicode_keeps_exact_offsets_and_the_machine_labels() -> None:
    machine = unicode_document()
    tasks = json.loads(json.dumps(to_label_studio([machine]), ensure_ascii=False))
    text = tasks[0]["data"]["text"]
    corrected = [
        (text.index("👩\u200d⚕️"), text.index("👩\u200d⚕️") + 4, "Person"),
        (text.index("diabetes 😷"), text.index("diabetes 😷") + 10, "Disease"),
        (text.index("𠀋𠀋"), text.index("𠀋𠀋") + 2, "Name"),
        (text.index("asma"), text.index("asma") + 4, "Disease"),
    ]
    result = [region(text, s, e, label) for s, e, label in corrected]
    reviewed = reviewed_from_label_studio(exported(tasks, [[annotation(result)]]))
    assert reviewed.skipped == []
    [document] = reviewed.documents
    assert document.id == "ü-1"
    assert document.text == UNICODE_TEXT
    assert [(e.start, e.end, e.label) for e in document.entities] == corrected
    assert document.mentions() == ["👩\u200d⚕️", "diabetes 😷", "𠀋𠀋", "asma"]
    extra = document.model_extra or {}
    assert extra["provenance"] == "human"
    assert extra["reviewer"] == "10"
    assert extra["reviewed_at"] == "2024-05-02T10:00:00.000000Z"
    assert extra["split"] == "dev"
    assert extra["machine_model_version"] == "lexicon-v2"
    assert extra["machine_entities"] == [e.model_dump(mode="json") for e in machine.entities]


def test_label_studios_documented_emoji_offsets_are_code_points() -> None:
    text = "🐱 Warning: This is a test text"
    task = {"data": {"text": text}, "annotations": [annotation([region(text, 21, 25, "region")])]}
    [document] = reviewed_from_label_studio([task]).documents
    assert document.mentions() == ["test"]


def test_utf16_offsets_of_old_label_studio_versions_are_recognised_by_their_text() -> None:
    text = "😷💊 fever and 𠀋 flu"
    start = text.index("flu")
    item = region(text, to_utf16(text, start), to_utf16(text, start + 3))
    item["value"]["text"] = "flu"
    [document] = reviewed_from_label_studio([{"data": {"text": text}, "annotations": [annotation([item])]}]).documents
    assert [(e.start, e.end) for e in document.entities] == [(start, start + 3)]


def test_offsets_that_match_neither_reading_of_value_text_are_refused() -> None:
    text = "😷 fever and flu"
    item = region(text, 2, 7)
    item["value"]["text"] = "flu"
    with pytest.raises(FormatError, match=r"^x.json: task 1: result 1: value.text does not match"):
        reviewed_from_label_studio([{"data": {"text": text}, "annotations": [annotation([item])]}], "x.json")


def test_the_latest_annotation_that_was_not_cancelled_wins() -> None:
    text = "Asthma and diabetes."
    task = {
        "data": {"id": "d", "text": text},
        "annotations": [
            annotation([region(text, 11, 19)], id=3, completed_by=30, updated_at="2024-05-03T08:00:00Z"),
            annotation([region(text, 0, 6)], id=1, completed_by=10, updated_at="2024-05-01T08:00:00Z"),
            annotation([], id=4, completed_by=40, updated_at="2024-05-04T08:00:00Z", was_cancelled=True),
            annotation([region(text, 0, 6), region(text, 11, 19)], id=2, completed_by=20, updated_at=None),
        ],
    }
    [document] = reviewed_from_label_studio([task]).documents
    assert document.mentions() == ["diabetes"]
    assert (document.model_extra or {})["reviewer"] == "30"
    assert (document.model_extra or {})["reviewed_at"] == "2024-05-03T08:00:00Z"


def test_without_times_the_last_completed_annotation_in_the_list_wins() -> None:
    text = "Asthma and diabetes."
    plain = [{"result": [region(text, 0, 6)]}, {"result": [region(text, 11, 19)], "completed_by": {"email": "a@b"}}]
    [document] = reviewed_from_label_studio([{"data": {"text": text}, "annotations": plain}]).documents
    assert document.mentions() == ["diabetes"]
    assert (document.model_extra or {})["reviewer"] == "a@b"
    assert "reviewed_at" not in (document.model_extra or {})


def test_tasks_without_a_completed_annotation_are_skipped_and_counted() -> None:
    documents = [Document(id=f"d{n}", text="Asthma.", entities=[]) for n in range(4)]
    tasks = to_label_studio(documents)
    given = [
        [annotation([region("Asthma.", 0, 6)])],
        [],
        [annotation([region("Asthma.", 0, 6)], was_cancelled=True)],
        [annotation([])],  # completed with no entities: reviewed, the machine was right to find none
    ]
    reviewed = reviewed_from_label_studio(exported(tasks, given))
    assert reviewed.skipped == [2, 3]
    assert [d.id for d in reviewed.documents] == ["d0", "d3"]
    assert [len(d.entities) for d in reviewed.documents] == [1, 0]
    assert reviewed_from_label_studio([{"data": {"text": "x"}}]).skipped == [1]  # no annotations key at all


def test_machine_entities_come_from_a_full_prediction_when_data_lacks_them() -> None:
    text = "Asthma and diabetes."
    task = {
        "data": {"text": text},
        "predictions": [{"model_version": "m1", "score": 0.4, "result": [region(text, 0, 6, score=0.4)]}],
        "annotations": [annotation([region(text, 11, 19)])],
    }
    [document] = reviewed_from_label_studio([task]).documents
    extra = document.model_extra or {}
    assert extra["machine_entities"] == [{"start": 0, "end": 6, "label": "Disease", "score": 0.4}]
    assert extra["machine_model_version"] == "m1"


def test_a_machine_record_already_on_the_document_is_never_overwritten() -> None:
    first = {"start": 0, "end": 6, "label": "Disease"}
    document = Document.model_validate(
        {
            "id": "d",
            "text": "Asthma and diabetes.",
            "entities": [first, {"start": 11, "end": 19, "label": "Disease"}],
            "provenance": "human",
            "reviewer": "10",
            "reviewed_at": "2024-01-01T00:00:00Z",
            "machine_entities": [first],
            "machine_model_version": "m0",
        }
    )
    tasks = to_label_studio([document])
    second = annotation([region(document.text, 11, 19)], completed_by=None, updated_at=None, created_at=None)
    [again] = reviewed_from_label_studio(exported(tasks, [[second]])).documents
    extra = again.model_extra or {}
    assert extra["machine_entities"] == [first]
    assert extra["machine_model_version"] == "m0"
    assert "reviewer" not in extra  # the earlier review's reviewer is not carried over to this one
    assert "reviewed_at" not in extra


@pytest.mark.parametrize(
    ("tasks", "reason"),
    [
        ({"data": {}}, r"^t.json: expected a JSON list of Label Studio tasks$"),
        (["oops"], r"^t.json: task 1: a task is a JSON object, not a str$"),
        ([{"data": {"text": "a"}}, {"data": {"txt": "a"}}], r"^t.json: task 2: expected data.text"),
        ([{"data": {"text": "a"}, "annotations": {"result": []}}], r"task 1: annotations is not a list$"),
        ([{"data": {"text": "a"}, "annotations": [{"id": 1}]}], r"task 1: annotation 1 has no result list$"),
        ([{"data": {"text": "a"}, "annotations": [{"result": ["x"]}]}], r"task 1: result 1 is not an object$"),
        (
            [{"data": {"text": "abc"}, "annotations": [{"result": [{"type": "labels", "value": {"start": "0"}}]}]}],
            r"task 1: result 1: value.start and value.end must be integers$",
        ),
        (
            [{"data": {"text": "abc"}, "annotations": [annotation([{**region("abc", 0, 1), "value": {"start": 0}}])]}],
            r"task 1: result 1: value.start and value.end must be integers$",
        ),
        (
            [{"data": {"text": "abc"}, "annotations": [{"result": [region("abc", 0, 1, "")]}]}],
            r"task 1: result 1: value.labels must be a non-empty list",
        ),
        (
            [
                {
                    "data": {"text": "abc"},
                    "annotations": [
                        {"result": [{**region("abc", 0, 3), "value": {"start": 0, "end": 9, "labels": ["D"]}}]}
                    ],
                }
            ],
            r"task 1: .*0 <= start < end <= 3",
        ),
        (
            [
                {
                    "data": {"text": "abcdef"},
                    "annotations": [{"result": [region("abcdef", 0, 4), region("abcdef", 2, 6)]}],
                }
            ],
            r"task 1: .*overlaps",
        ),
        (
            [{"data": {"text": "abc"}, "annotations": [{"result": [], "updated_at": "yesterday"}]}],
            r"task 1: annotation 1: updated_at is not an ISO 8601 time$",
        ),
        (
            [{"data": {"text": "abc", "machine_entities": [{"start": 0}]}, "annotations": [{"result": []}]}],
            r"task 1: data.machine_entities: ",
        ),
        (
            [{"data": {"id": "d", "text": "a"}, "annotations": [{"result": []}]}] * 2,
            r"task 2: document id 'd' repeats task 1$",
        ),
    ],
)
def test_a_malformed_task_is_refused_in_one_line_naming_the_task(tasks: Any, reason: str) -> None:
    with pytest.raises(FormatError, match=reason) as caught:
        reviewed_from_label_studio(tasks, "t.json")
    assert "\n" not in str(caught.value)


# --- plain conversion -----------------------------------------------------------------------------------------------


def test_plain_reading_takes_the_latest_completed_annotation_else_the_prediction() -> None:
    text = "Asthma and diabetes."
    entities = [{"start": 0, "end": 6, "label": "Disease"}]
    machine = Document.model_validate({"id": "m", "text": text, "entities": entities, "split": "x"})
    [task] = to_label_studio([machine])
    done = {**task, "annotations": [annotation([region(text, 11, 19)]), annotation([], was_cancelled=True)]}
    waiting, reviewed = from_label_studio([task, {**done, "data": {**done["data"], "id": "r"}}])
    assert waiting == machine  # the prediction, with the document's other keys
    assert reviewed.mentions() == ["diabetes"]
