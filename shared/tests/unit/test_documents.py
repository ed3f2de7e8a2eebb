"""JSONL document I/O: strict reading with file and line in every error, lossless atomic writing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from synthner_shared.contracts import Mention
from synthner_shared.documents import (
    Document,
    DocumentEntity,
    DocumentFormatError,
    read_documents,
    unique_mentions,
    write_documents,
)

GOLD = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = json.dumps({"id": "d1", "text": "Fever and asthma", "entities": [{"start": 10, "end": 16, "label": "Disease"}]})


def test_round_trip_keeps_extra_keys_and_unicode(tmp_path: Path) -> None:
    source = {
        "id": "ñ-1",
        "text": "Señora con diabetes 🙂\r\nfin",
        "entities": [{"start": 11, "end": 19, "label": "Disease", "cui": "D003920"}],
        "split": "train",
    }
    path = write_lines(tmp_path / "in.jsonl", [json.dumps(source, ensure_ascii=False)])
    (document,) = read_documents(path)
    assert document.mentions() == ["diabetes"]
    assert write_documents(tmp_path / "out.jsonl", [document]) == 1
    assert json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8")) == source


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not an object"),
        ("", "empty line"),
        (json.dumps({"text": "x", "entities": []}), "id: Field required"),
        (
            json.dumps({"id": "d2", "text": "flu", "entities": [{"start": 0, "end": 9, "label": "D"}]}),
            "inside the text",
        ),
        (
            json.dumps(
                {
                    "id": "d2",
                    "text": "flu cough",
                    "entities": [{"start": 4, "end": 9, "label": "D"}, {"start": 0, "end": 3, "label": "D"}],
                }
            ),
            "sorted",
        ),
        (GOOD, "duplicate document id 'd1'"),
    ],
)
def test_a_bad_line_fails_with_file_line_and_reason(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = write_lines(tmp_path / "docs.jsonl", [GOOD, bad_line, GOOD.replace('"d1"', '"d3"')])
    with pytest.raises(DocumentFormatError) as caught:
        list(read_documents(path))
    assert caught.value.line_number == 2
    assert str(caught.value).startswith(f"{path}:2: ")
    assert reason in caught.value.reason


def test_error_reason_does_not_echo_the_text(tmp_path: Path) -> None:
    line = json.dumps({"id": 5, "text": "Patient Jane Roe", "entities": []})
    with pytest.raises(DocumentFormatError) as caught:
        list(read_documents(write_lines(tmp_path / "d.jsonl", [line])))
    assert "Jane" not in str(caught.value)


def test_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"

    def documents() -> Iterator[Document]:
        yield Document(id="a", text="x")
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        write_documents(target, documents())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["ncbi_disease/dev.jsonl", "meddocan/dev.jsonl"])
def test_gold_files_read_cleanly(name: str) -> None:
    path = GOLD / name
    if not path.exists():
        pytest.skip(f"gold data not beside the repository ({path})")
    documents = list(read_documents(path))
    assert documents
    assert all(m.strip() for d in documents for m in d.mentions())


def test_unique_mentions_collapse_case_and_whitespace_keep_first_seen_and_filter_labels() -> None:
    text = "Colon  cancer and colon cancer; asthma. X"
    entities = [
        DocumentEntity(start=0, end=13, label="Disease"),
        DocumentEntity(start=18, end=30, label="Disease"),
        DocumentEntity(start=32, end=38, label="Symptom"),
        DocumentEntity(start=40, end=41, label="Disease"),  # one character: too short for a lexicon term
    ]
    document = Document(id="d", text=text, entities=entities)
    assert unique_mentions([document]) == [
        Mention(label="Disease", text="Colon cancer"),
        Mention(label="Symptom", text="asthma"),
    ]
    assert unique_mentions([document], ["Symptom"]) == [Mention(label="Symptom", text="asthma")]
