"""``synthner review export|import``: the Label Studio round trip on files, with the CLI's conventions (one-line
errors with exit 2, outputs written only once complete and never over an existing path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synthner.main import main
from synthner_shared.documents import Document, read_documents, write_documents

TEXT = "Paciente 😷 con diabetes; 糖尿病 y asma."
START = TEXT.index("diabetes")
MACHINE = [
    Document.model_validate(
        {
            "id": "n1",
            "text": TEXT,
            "entities": [{"start": START, "end": START + 8, "label": "Disease"}],
            "annotator": "lexicon",
        }
    ),
    Document.model_validate(
        {"id": "n2", "text": "Aspirin given.", "entities": [{"start": 0, "end": 7, "label": "Drug", "score": 0.8}]}
    ),
    Document(id="n3", text="Nothing found.", entities=[]),
]


def review(task: dict[str, Any], spans: list[tuple[str, str]], **fields: Any) -> dict[str, Any]:
    """``task`` as Label Studio's JSON export returns it once a reviewer submitted ``spans``."""
    text = task["data"]["text"]
    result = []
    for surface, label in spans:
        start = text.index(surface)
        value = {"start": start, "end": start + len(surface), "text": surface, "labels": [label]}
        result.append({"from_name": "label", "to_name": "text", "type": "labels", "value": value})
    annotation = {"result": result, "was_cancelled": False, "completed_by": 3, "updated_at": "2024-06-01T12:00:00Z"}
    return {**task, "annotations": [{**annotation, **fields}], "predictions": [1]}


def export(tmp_path: Path) -> list[dict[str, Any]]:
    source, tasks = tmp_path / "machine.jsonl", tmp_path / "tasks.json"
    write_documents(source, MACHINE)
    assert main(["review", "export", str(source), str(tasks), "--model-version", "v9"]) == 0
    loaded: list[dict[str, Any]] = json.loads(tasks.read_text(encoding="utf-8"))
    return loaded


def test_export_writes_tasks_with_predictions_to_review(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = export(tmp_path)
    assert "3 tasks (2 predicted spans)" in capsys.readouterr().out
    assert all("annotations" not in task for task in tasks)
    assert [t["predictions"][0]["model_version"] for t in tasks] == ["lexicon", "v9", "v9"]
    assert tasks[0]["predictions"][0]["result"][0]["value"]["text"] == "diabetes"
    assert tasks[1]["predictions"][0]["score"] == 0.8


def test_import_writes_reviewed_documents_and_counts_the_skipped_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = export(tmp_path)
    done = [
        review(tasks[0], [("😷", "Symptom"), ("diabetes", "Disease"), ("糖尿病", "Disease"), ("asma", "Disease")]),
        {**tasks[1], "annotations": [], "predictions": [2]},
        review(tasks[2], [], was_cancelled=True),
    ]
    (tmp_path / "export.json").write_text(json.dumps(done, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "reviewed.jsonl"
    capsys.readouterr()
    assert main(["review", "import", str(tmp_path / "export.json"), str(out)]) == 0
    assert "1 reviewed documents" in (line := capsys.readouterr().out)
    assert "2 tasks without a completed annotation skipped (tasks 2, 3)" in line
    [document] = list(read_documents(out))
    assert document.id == "n1"
    assert document.text == TEXT
    assert document.mentions() == ["😷", "diabetes", "糖尿病", "asma"]
    extra = document.model_extra or {}
    assert (extra["provenance"], extra["reviewer"], extra["reviewed_at"]) == ("human", "3", "2024-06-01T12:00:00Z")
    assert extra["machine_entities"] == [e.model_dump(mode="json") for e in MACHINE[0].entities]
    assert extra["machine_model_version"] == "lexicon"


def test_a_malformed_task_exits_2_in_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = export(tmp_path)
    bad = review(tasks[0], [("diabetes", "Disease")])
    bad["annotations"][0]["result"][0]["value"]["end"] = "12"
    source = tmp_path / "export.json"
    source.write_text(json.dumps([tasks[1], bad]), encoding="utf-8")
    out = tmp_path / "reviewed.jsonl"
    capsys.readouterr()
    assert main(["review", "import", str(source), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"synthner review: {source}: task 2: result 1: value.start and value.end must be integers"]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "machine.jsonl", "tasks.json"]


@pytest.mark.parametrize("action", ["export", "import"])
def test_review_refuses_a_missing_input_and_an_existing_output(
    tmp_path: Path, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["review", action, str(tmp_path / "none"), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"synthner review: {tmp_path / 'none'} not found"
    source, existing = tmp_path / "in", tmp_path / "out"
    source.write_text("[]\n" if action == "import" else "", encoding="utf-8")
    existing.write_text("keep", encoding="utf-8")
    assert main(["review", action, str(source), str(existing)]) == 2
    assert "exists" in capsys.readouterr().err
    assert existing.read_text(encoding="utf-8") == "keep"


def test_import_refuses_a_file_that_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "export.json"
    source.write_text("[{", encoding="utf-8")
    assert main(["review", "import", str(source), str(tmp_path / "out.jsonl")]) == 2
    assert capsys.readouterr().err.startswith(f"synthner review: {source}: not JSON")
    assert not (tmp_path / "out.jsonl").exists()
