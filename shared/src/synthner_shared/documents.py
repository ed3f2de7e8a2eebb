"""The JSON Lines document format (DESIGN.md, "Document format on disk").

One document a line: ``{"id": str, "text": str, "entities": [{"start": int, "end": int, "label": str}]}``.
Extra keys, on the document and on its entities, are allowed and kept on a round trip. Reading is strict: a
malformed line raises :class:`DocumentFormatError` naming the file, the line number and the reason; nothing is
skipped. Writing is atomic: the file appears complete or not at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthner_shared.contracts.messages import Mention
from synthner_shared.contracts.registry import describe_validation_error
from synthner_shared.contracts.spans import check_spans
from synthner_shared.files import atomic_writer


class DocumentEntity(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    start: int = Field(ge=0)
    end: int = Field(ge=1)
    label: str = Field(min_length=1)


class Document(BaseModel):
    """A text with its entity spans; spans obey the same invariants as the messages (sorted, no overlap, in bounds)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1)
    text: str
    entities: list[DocumentEntity] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_spans(self) -> Self:
        check_spans(self.text, self.entities)
        return self

    def mentions(self) -> list[str]:
        """The surface text of every entity, in order."""
        return [self.text[e.start : e.end] for e in self.entities]


class DocumentFormatError(ValueError):
    """A line of a document file is not a valid document."""

    def __init__(self, path: Path, line_number: int, reason: str) -> None:
        super().__init__(f"{path}:{line_number}: {reason}")
        self.path = path
        self.line_number = line_number
        self.reason = reason


def parse_document_line(line: str) -> Document:
    """Parse one line; raises ``ValueError`` with a reason that names fields but never echoes text."""
    if not line.strip():
        raise ValueError("empty line (one JSON document per line expected)")
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"a JSON {type(raw).__name__}, not an object")
    try:
        return Document.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None


def read_documents(path: str | os.PathLike[str]) -> Iterator[Document]:
    """Yield the documents of a JSONL file in order; the first bad line raises :class:`DocumentFormatError`.

    Document ids must be unique within a file.
    """
    file_path = Path(path)
    seen: set[str] = set()
    with file_path.open(encoding="utf-8-sig", newline="") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                document = parse_document_line(line.removesuffix("\n").removesuffix("\r"))
            except ValueError as exc:
                raise DocumentFormatError(file_path, line_number, str(exc)) from None
            if document.id in seen:
                raise DocumentFormatError(file_path, line_number, f"duplicate document id {document.id!r}")
            seen.add(document.id)
            yield document


def dump_document_line(document: Document) -> str:
    return json.dumps(document.model_dump(mode="json"), ensure_ascii=False)


def write_documents(path: str | os.PathLike[str], documents: Iterable[Document]) -> int:
    """Write documents as JSONL atomically (:func:`~synthner_shared.files.atomic_writer`). Returns the number
    written."""
    count = 0
    with atomic_writer(Path(path)) as handle:
        for document in documents:
            handle.write(dump_document_line(document))
            handle.write("\n")
            count += 1
    return count


def unique_mentions(documents: Iterable[Document], labels: Iterable[str] | None = None) -> list[Mention]:
    """The documents' mentions (of ``labels``, default every label), whitespace collapsed, 2-200 characters, unique
    by label and case-insensitive text, in first-seen order: a lexicon, or the seeds of label-conditioned notes."""
    wanted = None if labels is None else set(labels)
    seen: dict[tuple[str, str], Mention] = {}
    for document in documents:
        for entity in document.entities:
            text = " ".join(document.text[entity.start : entity.end].split())
            if (wanted is None or entity.label in wanted) and 2 <= len(text) <= 200:
                seen.setdefault((entity.label, text.lower()), Mention(label=entity.label, text=text))
    return list(seen.values())
