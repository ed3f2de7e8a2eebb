"""Converters between the document format (JSONL) and CoNLL/BIO, BRAT standoff and Label Studio JSON.

Pure functions over :class:`~synthner_shared.documents.Document`; the CLI's ``convert`` does the file handling.

- **CoNLL/BIO**: one ``token<TAB>tag`` line per token (IOB2), a blank line between documents, each document opened by
  ``# id = <id>``. Tokens are words and single punctuation marks; reading joins them with single spaces, so original
  whitespace is not kept, and a span that ends inside a token grows to the token's bounds.
- **BRAT**: ``<id>.txt`` with the text and ``<id>.ann`` with ``T<n><TAB><label> <start> <end><TAB><mention>`` lines.
  Discontinuous entities (``start end;start end``) have no equivalent here and are refused.
- **Label Studio**: a JSON list of tasks ``{"data": {"id", "text", ...}, "predictions": [{"model_version", "score",
  "result": [...]}]}`` with ``labels`` results (``value``: ``start``, ``end``, ``text``, ``labels``). Entities are
  written as predictions (pre-annotations to review), never as annotations, so no task is marked done; offsets are
  Unicode code points on both sides. Reading takes each task's latest completed annotation (or else its first
  prediction); :func:`reviewed_from_label_studio` reads completed tasks back as reviewed documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

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


def read_brat_folder(folder: Path) -> Iterator[Document]:
    for txt in sorted(folder.glob("*.txt")):
        ann = txt.with_suffix(".ann")
        annotations = ann.read_text(encoding="utf-8") if ann.exists() else ""
        yield from_brat(txt.stem, txt.read_text(encoding="utf-8"), annotations, str(ann))


# --- Label Studio ---------------------------------------------------------------------------------------------------

LABEL_STUDIO_FROM_NAME = "label"
LABEL_STUDIO_TO_NAME = "text"
UNKNOWN_MODEL_VERSION = "unknown"
_CORE_FIELDS = ("id", "text", "entities")
_REVIEW_FIELDS = ("provenance", "reviewer", "reviewed_at")


@dataclass(frozen=True)
class ReviewedTasks:
    """What :func:`reviewed_from_label_studio` read: the reviewed documents, and the (1-based) numbers of the tasks
    that had no completed annotation and were skipped."""

    documents: list[Document]
    skipped: list[int]


class _TaskError(ValueError):
    """A malformed part of one task; the reader adds the file and the task number."""


def model_version_of(document: Document, default: str | None = None) -> str:
    """The model that labelled ``document``: its ``model_version`` or ``annotator`` key, else ``default``."""
    extra = document.model_extra or {}
    for key in ("model_version", "annotator"):
        value = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return default or UNKNOWN_MODEL_VERSION


def _score(entity: DocumentEntity) -> float | None:
    value = (entity.model_extra or {}).get("score")
    return float(value) if _is_number(value) else None


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def to_label_studio(documents: Iterable[Document], *, model_version: str | None = None) -> list[dict[str, Any]]:
    """One Label Studio task per document, its entities as the task's ``predictions`` (pre-annotations to review).

    Nothing goes into ``annotations``, so no task counts as done. ``data`` keeps the text, the document id, the
    document's other keys (``document``), the machine entities in full (``machine_entities``) and the model version:
    Label Studio's JSON export lists a task's predictions as ids only, so the review import reads them from ``data``.
    Offsets are Unicode code points, as in the document format and in Label Studio's ``Text`` results.
    """
    tasks: list[dict[str, Any]] = []
    for document in documents:
        version = model_version_of(document, model_version)
        dumped = document.model_dump(mode="json")
        data: dict[str, Any] = {"id": document.id, "text": document.text}
        extra = {k: v for k, v in dumped.items() if k not in _CORE_FIELDS}
        if extra:
            data["document"] = extra
        data["machine_entities"] = dumped["entities"]
        data["model_version"] = version
        result: list[dict[str, Any]] = []
        for number, entity in enumerate(document.entities):
            item: dict[str, Any] = {
                "id": f"p{number}",
                "from_name": LABEL_STUDIO_FROM_NAME,
                "to_name": LABEL_STUDIO_TO_NAME,
                "type": "labels",
                "value": {
                    "start": entity.start,
                    "end": entity.end,
                    "text": document.text[entity.start : entity.end],
                    "labels": [entity.label],
                },
            }
            score = _score(entity)
            if score is not None:
                item["score"] = score
            result.append(item)
        prediction: dict[str, Any] = {"model_version": version, "result": result}
        scores = [s for s in map(_score, document.entities) if s is not None]
        if scores:
            prediction["score"] = sum(scores) / len(scores)
        tasks.append({"data": data, "predictions": [prediction]})
    return tasks


def dump_label_studio(documents: Iterable[Document], *, model_version: str | None = None) -> str:
    return json.dumps(to_label_studio(documents, model_version=model_version), ensure_ascii=False, indent=1)


def from_label_studio(tasks: Any, source: str = "<label-studio>") -> Iterator[Document]:
    """Documents from Label Studio tasks: the spans of each task's latest completed annotation, else of its first
    prediction (a plain conversion; :func:`reviewed_from_label_studio` is the review import)."""
    for number, task, data in _tasks(tasks, source):
        try:
            annotation = _latest_annotation(task.get("annotations"))
            if annotation is not None:
                entities = _result_entities(data["text"], annotation["result"])
            else:
                entities = _machine_entities(data, task.get("predictions")) or []
            fields = _document_fields(data)
        except _TaskError as exc:
            raise FormatError(f"{source}: task {number}: {exc}") from None
        yield _document(_task_id(task, data, number), data["text"], entities, fields, f"{source}: task {number}")


def reviewed_from_label_studio(tasks: Any, source: str = "<label-studio>") -> ReviewedTasks:
    """Reviewed documents from completed Label Studio tasks (Label Studio's JSON export).

    Each task's latest annotation that was not cancelled (by ``updated_at``, else ``created_at``, else its place in
    the list) gives the entities; the document gets ``provenance: "human"``, ``reviewer`` (the annotation's
    ``completed_by``) and ``reviewed_at`` when given, and keeps the machine's entities and model version beside them
    (``machine_entities``, ``machine_model_version``; a value already on the document is never replaced). Tasks
    without such an annotation are skipped and counted. A malformed task raises :class:`FormatError` naming the task.
    """
    documents: list[Document] = []
    skipped: list[int] = []
    seen: dict[str, int] = {}
    for number, task, data in _tasks(tasks, source):
        try:
            annotation = _latest_annotation(task.get("annotations"))
            if annotation is None:
                skipped.append(number)
                continue
            entities = _result_entities(data["text"], annotation["result"])
            fields = _document_fields(data)
            for key in _REVIEW_FIELDS:
                fields.pop(key, None)
            fields["provenance"] = "human"
            reviewer = _reviewer(annotation.get("completed_by"))
            if reviewer is not None:
                fields["reviewer"] = reviewer
            reviewed_at = annotation.get("updated_at") or annotation.get("created_at")
            if reviewed_at is not None:
                fields["reviewed_at"] = reviewed_at
            machine = _machine_entities(data, task.get("predictions"))
            if machine is not None:
                fields.setdefault("machine_entities", [e.model_dump(mode="json") for e in machine])
            version = _machine_version(data, task.get("predictions"))
            if version is not None:
                fields.setdefault("machine_model_version", version)
        except _TaskError as exc:
            raise FormatError(f"{source}: task {number}: {exc}") from None
        document = _document(_task_id(task, data, number), data["text"], entities, fields, f"{source}: task {number}")
        if document.id in seen:
            raise FormatError(f"{source}: task {number}: document id {document.id!r} repeats task {seen[document.id]}")
        seen[document.id] = number
        documents.append(document)
    return ReviewedTasks(documents, skipped)


def _tasks(tasks: Any, source: str) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    if not isinstance(tasks, list):
        raise FormatError(f"{source}: expected a JSON list of Label Studio tasks")
    for number, task in enumerate(tasks, start=1):
        if not isinstance(task, dict):
            raise FormatError(f"{source}: task {number}: a task is a JSON object, not a {type(task).__name__}")
        data = task.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise FormatError(f"{source}: task {number}: expected data.text (a string)")
        yield number, task, data


def _task_id(task: dict[str, Any], data: dict[str, Any], number: int) -> str:
    for value in (data.get("id"), task.get("id")):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return f"task-{number}"


def _document_fields(data: dict[str, Any]) -> dict[str, Any]:
    extra = data.get("document", {})
    if not isinstance(extra, dict):
        raise _TaskError("data.document (the document's other keys) is not an object")
    return {k: v for k, v in extra.items() if k not in _CORE_FIELDS}


def _document(doc_id: str, text: str, entities: list[DocumentEntity], fields: dict[str, Any], where: str) -> Document:
    try:
        return Document.model_validate({**fields, "id": doc_id, "text": text, "entities": entities})
    except ValidationError as exc:
        raise FormatError(f"{where}: {describe_validation_error(exc)}") from None


def _latest_annotation(annotations: Any) -> dict[str, Any] | None:
    """The latest annotation not cancelled, or None; raises :class:`_TaskError` for a malformed one."""
    if annotations is None:
        return None
    if not isinstance(annotations, list):
        raise _TaskError("annotations is not a list")
    latest: tuple[datetime, int] | None = None
    chosen: dict[str, Any] | None = None
    for number, annotation in enumerate(annotations, start=1):
        if not isinstance(annotation, dict):
            raise _TaskError(f"annotation {number} is not an object")
        if not isinstance(annotation.get("result"), list):
            raise _TaskError(f"annotation {number} has no result list")
        if annotation.get("was_cancelled") is True:
            continue
        key = (_time(annotation, number), number)
        if latest is None or key > latest:
            latest, chosen = key, annotation
    return chosen


def _time(annotation: dict[str, Any], number: int) -> datetime:
    for field in ("updated_at", "created_at"):
        value = annotation.get(field)
        if value is None:
            continue
        try:
            if not isinstance(value, str):
                raise ValueError
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise _TaskError(f"annotation {number}: {field} is not an ISO 8601 time") from None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def _reviewer(value: Any) -> str | None:
    if isinstance(value, dict):  # some exports expand the user: {"id": 1, "email": ...}
        value = value.get("email") or value.get("id")
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        return str(value)
    return None


def _machine_entities(data: dict[str, Any], predictions: Any) -> list[DocumentEntity] | None:
    """The machine's entities: ``data.machine_entities`` (written by the export), else the first prediction given in
    full (Label Studio's export lists predictions as ids), else None."""
    stored = data.get("machine_entities")
    if stored is not None:
        if not isinstance(stored, list):
            raise _TaskError("data.machine_entities is not a list")
        try:
            return [DocumentEntity.model_validate(e) for e in stored]
        except ValidationError as exc:
            raise _TaskError(f"data.machine_entities: {describe_validation_error(exc)}") from None
    prediction = _first_prediction(predictions)
    return None if prediction is None else _result_entities(data["text"], prediction.get("result"))


def _machine_version(data: dict[str, Any], predictions: Any) -> str | None:
    prediction = _first_prediction(predictions)
    for value in (data.get("model_version"), None if prediction is None else prediction.get("model_version")):
        if isinstance(value, str) and value:
            return value
    return None


def _first_prediction(predictions: Any) -> dict[str, Any] | None:
    if not isinstance(predictions, list):
        return None
    return next((p for p in predictions if isinstance(p, dict)), None)


def _result_entities(text: str, result: Any) -> list[DocumentEntity]:
    """Entities of the ``labels`` items of one annotation's or prediction's ``result`` (other items are ignored)."""
    if not isinstance(result, list):
        raise _TaskError("a result is not a list")
    entities: list[DocumentEntity] = []
    for number, item in enumerate(result, start=1):
        if not isinstance(item, dict):
            raise _TaskError(f"result {number} is not an object")
        if item.get("type") != "labels":
            continue
        value = item.get("value")
        if not isinstance(value, dict):
            raise _TaskError(f"result {number}: value is not an object")
        start, end, labels = value.get("start"), value.get("end"), value.get("labels")
        if not _is_int(start) or not _is_int(end):
            raise _TaskError(f"result {number}: value.start and value.end must be integers")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
            raise _TaskError(f"result {number}: value.labels must be a non-empty list of label names")
        start, end = _code_points(text, start, end, value.get("text"), number)
        extra = {"score": item["score"]} if _is_number(item.get("score")) else {}
        try:
            entities.extend(DocumentEntity(start=start, end=end, label=label, **extra) for label in labels)
        except ValidationError as exc:
            raise _TaskError(f"result {number}: {describe_validation_error(exc)}") from None
    return sorted(entities, key=lambda e: (e.start, e.end))


def _code_points(text: str, start: int, end: int, surface: Any, number: int) -> tuple[int, int]:
    """Offsets as code points. Label Studio counts code points, as Python does; results from old versions counted
    UTF-16 code units (JavaScript's string length), which differ after an emoji or another non-BMP character. When
    ``value.text`` is given it decides: the code-point slice must equal it, or else the UTF-16 reading must."""
    if not isinstance(surface, str) or text[start:end] == surface:
        return start, end
    converted = _from_utf16(text, start, end)
    if converted is not None and text[converted[0] : converted[1]] == surface:
        return converted
    raise _TaskError(
        f"result {number}: value.text does not match data.text[start:end] (offsets are counted in code points)"
    )


def _from_utf16(text: str, start: int, end: int) -> tuple[int, int] | None:
    """UTF-16 code-unit offsets as code points, or None when the text has no non-BMP character or an offset falls
    inside a surrogate pair or past the end."""
    if all(ord(c) <= 0xFFFF for c in text):
        return None
    positions: dict[int, int] = {}
    units = 0
    for index, character in enumerate(text):
        positions[units] = index
        units += 2 if ord(character) > 0xFFFF else 1
    positions[units] = len(text)
    if start not in positions or end not in positions:
        return None
    return positions[start], positions[end]


def to_utf16(text: str, offset: int) -> int:
    """A code-point offset of ``text`` as a UTF-16 code-unit offset (what JavaScript's string indices count)."""
    return offset + sum(1 for c in text[:offset] if ord(c) > 0xFFFF)
