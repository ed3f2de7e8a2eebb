"""Converters between the document format (JSONL) and CoNLL/BIO, BRAT standoff and Label Studio JSON.

Pure functions over :class:`~synthner_shared.documents.Document`; the CLI's ``convert`` does the file handling.

- **CoNLL/BIO**: one ``token<TAB>tag`` line per token (IOB2), a blank line between documents, each document opened by
  ``# id = <id>``. Tokens are words and single punctuation marks; reading joins them with single spaces, so original
  whitespace is not kept, and a span that ends inside a token grows to the token's bounds.
- **BRAT**: ``<id>.txt`` with the text and ``<id>.ann`` with ``T<n><TAB><label> <start> <end><TAB><mention>`` lines.
  Discontinuous entities (``start end;start end``) have no equivalent here and are refused.
- **Label Studio**: a JSON list of tasks ``{"data": {"id", "text"}, "annotations": [{"result": [...]}]}`` with
  ``labels`` results (``value``: ``start``, ``end``, ``text``, ``labels``); reading takes the first annotation (or
  else the first prediction) of each task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from synthner_shared.contracts import describe_validation_error
from synthner_shared.documents import Document, DocumentEntity

TOKEN = re.compile(r"\w+|[^\w\s]")
ID_LINE = re.compile(r"^# id = (?P<id>.+)$")


class FormatError(ValueError):
    """Input that cannot be converted; the message names the file (and line) and what is wrong."""


# --- CoNLL / BIO ----------------------------------------------------------------------------------------------------


def tokens(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in TOKEN.finditer(text)]


def to_conll(documents: Iterable[Document]) -> Iterator[str]:
    """Lines (without newlines) of the CoNLL/BIO file for ``documents``."""
    for document in documents:
        yield f"# id = {document.id}"
        spans = sorted((e.start, e.end, e.label) for e in document.entities)
        previous: int | None = None
        for start, end in tokens(document.text):
            inside = next((i for i, (s, e, _) in enumerate(spans) if start < e and end > s), None)
            tag = "O" if inside is None else f"{'I' if inside == previous else 'B'}-{spans[inside][2]}"
            previous = inside
            yield f"{document.text[start:end]}\t{tag}"
        yield ""


def from_conll(lines: Iterable[str], source: str = "<conll>") -> Iterator[Document]:
    """Documents from CoNLL/BIO lines (``token<TAB or space>tag``; the tag is the last column)."""
    doc_id: str | None = None
    rows: list[tuple[str, str]] = []
    count = 0

    def flush() -> Document | None:
        nonlocal rows, doc_id, count
        if not rows:
            return None
        count += 1
        document = _bio_document(doc_id or f"doc-{count}", rows, source)
        rows, doc_id = [], None
        return document

    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n")
        match = ID_LINE.match(line)
        if match or line.startswith("-DOCSTART-") or not line.strip():
            document = flush()
            if document is not None:
                yield document
            if match:
                doc_id = match["id"].strip()
            continue
        if line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2 or not (parts[-1] == "O" or re.fullmatch(r"[BI]-\S+", parts[-1])):
            raise FormatError(f"{source}:{number}: expected 'token<TAB>tag' with an IOB2 tag (O, B-X, I-X)")
        rows.append((parts[0], parts[-1]))
    document = flush()
    if document is not None:
        yield document


def _bio_document(doc_id: str, rows: Sequence[tuple[str, str]], source: str) -> Document:
    text_parts: list[str] = []
    entities: list[DocumentEntity] = []
    position = 0
    open_span: tuple[int, str] | None = None
    last_end = 0
    for token, tag in rows:
        if text_parts:
            text_parts.append(" ")
            position += 1
        start, end = position, position + len(token)
        text_parts.append(token)
        position = end
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and open_span is not None and open_span[1] == label
        if open_span is not None and not continues:
            entities.append(DocumentEntity(start=open_span[0], end=last_end, label=open_span[1]))
            open_span = None
        if prefix in {"B", "I"} and not continues:
            open_span = (start, label)  # an I- without a B- starts a span (IOB1 and sloppy files)
        last_end = end
    if open_span is not None:
        entities.append(DocumentEntity(start=open_span[0], end=last_end, label=open_span[1]))
    try:
        return Document(id=doc_id, text="".join(text_parts), entities=entities)
    except ValidationError as exc:
        raise FormatError(f"{source}: document {doc_id}: {describe_validation_error(exc)}") from None


# --- BRAT -----------------------------------------------------------------------------------------------------------


def to_brat(document: Document) -> tuple[str, str]:
    """The ``.txt`` and ``.ann`` contents of one document."""
    lines = [
        f"T{n}\t{e.label} {e.start} {e.end}\t{document.text[e.start : e.end].replace(chr(10), ' ')}"
        for n, e in enumerate(sorted(document.entities, key=lambda e: (e.start, e.end)), start=1)
    ]
    return document.text, "".join(line + "\n" for line in lines)


def from_brat(doc_id: str, text: str, ann: str, source: str = "<brat>") -> Document:
    entities: list[DocumentEntity] = []
    for number, line in enumerate(ann.splitlines(), start=1):
        if not line.startswith("T"):
            continue  # relations, events, attributes and notes have no equivalent in the document format
        parts = line.split("\t")
        if len(parts) < 2:
            raise FormatError(f"{source}:{number}: expected 'T<n><TAB><label> <start> <end><TAB><text>'")
        if ";" in parts[1]:
            raise FormatError(f"{source}:{number}: discontinuous entity; the document format has contiguous spans only")
        fields = parts[1].split()
        if len(fields) != 3 or not fields[1].isdigit() or not fields[2].isdigit():
            raise FormatError(f"{source}:{number}: expected '<label> <start> <end>' in the second column")
        try:
            entities.append(DocumentEntity(start=int(fields[1]), end=int(fields[2]), label=fields[0]))
        except ValidationError as exc:
            raise FormatError(f"{source}:{number}: {describe_validation_error(exc)}") from None
    try:
        return Document(id=doc_id, text=text, entities=sorted(entities, key=lambda e: (e.start, e.end)))
    except ValidationError as exc:
        raise FormatError(f"{source}: {describe_validation_error(exc)}") from None


# --- Label Studio ---------------------------------------------------------------------------------------------------


def to_label_studio(documents: Iterable[Document]) -> list[dict[str, Any]]:
    return [
        {
            "data": {"id": d.id, "text": d.text},
            "annotations": [
                {
                    "result": [
                        {
                            "id": f"{d.id}-{n}",
                            "from_name": "label",
                            "to_name": "text",
                            "type": "labels",
                            "value": {
                                "start": e.start,
                                "end": e.end,
                                "text": d.text[e.start : e.end],
                                "labels": [e.label],
                            },
                        }
                        for n, e in enumerate(d.entities)
                    ]
                }
            ],
        }
        for d in documents
    ]


def from_label_studio(tasks: Any, source: str = "<label-studio>") -> Iterator[Document]:
    if not isinstance(tasks, list):
        raise FormatError(f"{source}: expected a JSON list of Label Studio tasks")
    for number, task in enumerate(tasks, start=1):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise FormatError(f"{source}: task {number}: expected data.text")
        doc_id = str(data.get("id", task.get("id", f"task-{number}")))
        try:
            entities = _label_studio_entities(task.get("annotations") or task.get("predictions") or [{"result": []}])
            document = Document(id=doc_id, text=data["text"], entities=entities)
        except (KeyError, TypeError, AttributeError):
            raise FormatError(f"{source}: task {number}: a labels result needs value.start, end and labels") from None
        except ValidationError as exc:
            raise FormatError(f"{source}: task {number}: {describe_validation_error(exc)}") from None
        yield document


def _label_studio_entities(sets: Any) -> list[DocumentEntity]:
    entities = []
    for result in sets[0].get("result", []):
        value = result.get("value", {})
        if result.get("type") != "labels" or "start" not in value:
            continue
        for label in value["labels"]:
            entities.append(DocumentEntity(start=int(value["start"]), end=int(value["end"]), label=label))
    return sorted(entities, key=lambda e: (e.start, e.end))


def read_brat_folder(folder: Path) -> Iterator[Document]:
    for txt in sorted(folder.glob("*.txt")):
        ann = txt.with_suffix(".ann")
        annotations = ann.read_text(encoding="utf-8") if ann.exists() else ""
        yield from_brat(txt.stem, txt.read_text(encoding="utf-8"), annotations, str(ann))


def dump_label_studio(documents: Iterable[Document]) -> str:
    return json.dumps(to_label_studio(documents), ensure_ascii=False, indent=1)
