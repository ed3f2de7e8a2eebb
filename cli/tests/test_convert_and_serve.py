"""``synthner convert`` round trips through every format, refuses bad input with one line; ``synthner serve``'s
refusals (the happy path replaces the process with the service's own entry point)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from synthner.main import main
from synthner_shared.documents import Document, DocumentEntity, read_documents, write_documents
from synthner_shared.formats import FormatError, from_brat, from_conll, to_conll

DOCS = [
    Document(
        id="n1",
        text="History of type 2 diabetes, asthma. No cancer.",
        entities=[
            DocumentEntity(start=11, end=26, label="Disease"),
            DocumentEntity(start=28, end=34, label="Disease"),
            DocumentEntity(start=39, end=45, label="Disease"),
        ],
    ),
    Document(id="n2", text="Aspirin given.", entities=[DocumentEntity(start=0, end=7, label="Drug")]),
    Document(id="n3", text="Nothing found.", entities=[]),
]


def spans(documents: list[Document]) -> list[list[tuple[str, str]]]:
    return [[(d.text[e.start : e.end], e.label) for e in d.entities] for d in documents]


@pytest.mark.parametrize("name", ["out.conll", "brat", "tasks.json"])
def test_convert_round_trips_entities_through_each_format(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    write_documents(source, DOCS)
    middle, back = tmp_path / name, tmp_path / "back.jsonl"
    assert main(["convert", str(source), str(middle)]) == 0
    assert main(["convert", str(middle), str(back)]) == 0
    result = list(read_documents(back))
    assert [d.id for d in result] == ["n1", "n2", "n3"]
    assert spans(result) == spans(DOCS)
    if name != "out.conll":  # CoNLL keeps tokens, not whitespace
        assert [d.text for d in result] == [d.text for d in DOCS]
    assert "3 documents" in capsys.readouterr().out


def test_conll_tags_are_iob2() -> None:
    lines = list(to_conll(DOCS[:1]))
    assert lines[0] == "# id = n1"
    assert "type\tB-Disease" in lines
    assert "diabetes\tI-Disease" in lines
    assert "asthma\tB-Disease" in lines
    assert "History\tO" in lines


def test_a_bad_conll_tag_names_file_and_line() -> None:
    with pytest.raises(FormatError, match=r"x.conll:2: expected"):
        list(from_conll(["a\tO\n", "b\tDisease\n"], "x.conll"))


def test_discontinuous_brat_entities_are_refused() -> None:
    with pytest.raises(FormatError, match="discontinuous"):
        from_brat("d", "abc def", "T1\tDisease 0 3;4 7\tabc def\n")


def test_convert_refuses_missing_input_and_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(tmp_path / "none.jsonl"), str(tmp_path / "o.conll")]) == 2
    assert "not found" in capsys.readouterr().err
    source = tmp_path / "in.jsonl"
    write_documents(source, DOCS)
    existing = tmp_path / "o.conll"
    existing.write_text("keep")
    assert main(["convert", str(source), str(existing)]) == 2
    assert "exists" in capsys.readouterr().err
    assert existing.read_text() == "keep"


def test_a_failed_conversion_leaves_no_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = tmp_path / "tasks.json"
    tasks.write_text(
        json.dumps(
            [
                {
                    "data": {"text": "abc"},
                    "annotations": [
                        {"result": [{"type": "labels", "value": {"start": 0, "end": 9, "labels": ["Disease"]}}]}
                    ],
                }
            ]
        )
    )
    out = tmp_path / "out.jsonl"
    assert main(["convert", str(tasks), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("synthner convert: ")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tasks.json"]


def test_serve_llm_on_a_port_in_use_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "llm", "--port", str(taken.getsockname()[1])]) == 2
    assert "in use" in capsys.readouterr().err


def test_serve_refuses_port_for_a_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "generator", "--port", "1"]) == 2
    assert "--port is for `llm`" in capsys.readouterr().err
