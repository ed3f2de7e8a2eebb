"""``synthner convert`` round trips through every format, refuses bad input with one line; ``synthner serve``'s
refusals (the happy paths, which replace the process with the service's own entry point, are in
test_serve_and_supervisor.py)."""

from __future__ import annotations

import json
import socket
import sys
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


@pytest.mark.parametrize("name", ["out.conll", "brat", "tasks.json", "docs.spacy"])
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


def test_label_studio_export_puts_entities_in_predictions_not_annotations(tmp_path: Path) -> None:
    source, tasks = tmp_path / "in.jsonl", tmp_path / "tasks.json"
    write_documents(source, DOCS)
    assert main(["convert", str(source), str(tasks)]) == 0
    written = json.loads(tasks.read_text(encoding="utf-8"))
    assert all("annotations" not in task for task in written)  # annotations would mark every task as done
    assert [len(task["predictions"][0]["result"]) for task in written] == [3, 1, 0]
    assert [task["data"]["id"] for task in written] == ["n1", "n2", "n3"]


def test_a_docbin_is_what_spacy_reads_with_the_exact_spans(tmp_path: Path) -> None:
    spacy = pytest.importorskip("spacy")
    docbin = pytest.importorskip("spacy.tokens")

    source = tmp_path / "in.jsonl"
    tricky = Document(
        id="n4",
        text="Type 2 diabetes,asthma.\n\n  No cancer-free days.",
        entities=[
            DocumentEntity(start=0, end=15, label="Disease"),
            DocumentEntity(start=16, end=22, label="Disease"),
            DocumentEntity(start=30, end=36, label="Disease"),  # "cancer" inside the token "cancer-free"
        ],
    )
    write_documents(source, [*DOCS, tricky])
    assert main(["convert", str(source), str(tmp_path / "docs.spacy")]) == 0
    docs = list(docbin.DocBin().from_bytes((tmp_path / "docs.spacy").read_bytes()).get_docs(spacy.blank("en").vocab))
    assert [d.text for d in docs] == [d.text for d in [*DOCS, tricky]]
    assert [(e.text, e.label_) for e in docs[3].ents] == [
        ("Type 2 diabetes", "Disease"),
        ("asthma", "Disease"),
        ("cancer", "Disease"),
    ]


def test_a_file_that_is_not_a_docbin_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("spacy")
    bad = tmp_path / "bad.spacy"
    bad.write_bytes(b"not a docbin")
    assert main(["convert", str(bad), str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"synthner convert: {bad}: not a spaCy DocBin")
    assert not (tmp_path / "out.jsonl").exists()


def test_docbin_without_spacy_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy now raises ImportError
    source = tmp_path / "in.jsonl"
    write_documents(source, DOCS)
    assert main(["convert", str(source), str(tmp_path / "docs.spacy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert 'pip install "synthner[spacy]"' in err[0]
    assert not (tmp_path / "docs.spacy").exists()


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
