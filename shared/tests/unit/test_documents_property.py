"""Property tests of JSONL document I/O: any valid document set survives a write and a read unchanged, and any
single bad line makes reading fail with the file name and that line's number (without echoing the note text)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from synthner_shared.documents import Document, DocumentFormatError, dump_document_line, read_documents, write_documents

RESERVED = {"id", "text", "entities", "start", "end", "label"}
CANARY = "QX7-not-to-be-echoed"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
extra_keys = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda k: k not in RESERVED), json_values, max_size=3
)


@st.composite
def documents(draw: st.DrawFn, doc_id: str) -> dict[str, Any]:
    """One valid document as its JSON object: any Unicode text (line breaks, BOMs, NEL, U+2028 included), sorted
    disjoint spans inside it, extra keys on the document and on its entities."""
    text = draw(st.text(max_size=200))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=12)))
    entities = [
        {"start": a, "end": b, "label": draw(st.sampled_from(["Disease", "Drug", "Ünïcode label"])), **draw(extra_keys)}
        for a, b in zip(cuts[::2], cuts[1::2], strict=False)
        if a < b
    ]
    return {"id": doc_id, "text": text, "entities": entities, **draw(extra_keys)}


@st.composite
def document_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True))
    return [draw(documents(doc_id)) for doc_id in ids]


@given(document_sets())
def test_any_valid_documents_survive_a_write_and_a_read_unchanged(sources: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "docs.jsonl"
        assert write_documents(path, [Document.model_validate(s) for s in sources]) == len(sources)
        read = [d.model_dump(mode="json") for d in read_documents(path)]
        assert path.read_text(encoding="utf-8").count("\n") == len(sources)
    assert read == sources


def _span_past_the_end(source: dict[str, Any]) -> str:
    end = len(source["text"]) + 1
    return json.dumps({**source, "entities": [{"start": 0, "end": end, "label": "Disease"}]}, ensure_ascii=False)


def _missing_text(source: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in source.items() if k != "text"}, ensure_ascii=False)


def _not_an_object(source: dict[str, Any]) -> str:
    return json.dumps([source["text"]], ensure_ascii=False)


@given(document_sets(), st.data())
def test_a_bad_line_anywhere_fails_with_the_file_and_its_line_number(
    sources: list[dict[str, Any]], data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(sources)), label="position")
    victim = {"id": "victim", "text": f"Patient {CANARY} seen", "entities": []}
    damage = data.draw(st.sampled_from(["truncated", "span past the end", "missing text", "not an object", "blank"]))
    line = dump_document_line(Document.model_validate(victim))
    if damage == "truncated":
        bad = line[: data.draw(st.integers(1, len(line) - 1), label="cut")]
    elif damage == "span past the end":
        bad = _span_past_the_end(victim)
    elif damage == "missing text":
        bad = _missing_text(victim)
    elif damage == "not an object":
        bad = _not_an_object(victim)
    else:
        bad = "  "
    lines = [dump_document_line(Document.model_validate(s)) for s in sources]
    lines.insert(position, bad)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "docs.jsonl"
        path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
        try:
            read = list(read_documents(path))
        except DocumentFormatError as error:
            caught = error
        else:
            raise AssertionError(f"{damage} line read as {len(read)} documents")
    assert caught.path == path
    assert caught.line_number == position + 1
    assert str(caught).startswith(f"{path}:{position + 1}: ")
    assert CANARY not in str(caught)
