"""The dataset store: annotated documents kept durably, de-duplicated by note id, grouped into immutable versions.

SQLite (WAL journal, ``synchronous=FULL``): a write returns only after its transaction is on disk, so the consumer
can ack right after :meth:`DatasetStore.add`; a crash mid-write leaves the previous state, never a torn line (which
an append-only JSONL would need recovery code for); ``note_id`` as a unique key gives de-duplication in the same
transaction; manifests and selections are queries. Documents are never updated or deleted: the first annotation of a
note id is the one trained on. Every annotator's first annotation of a note is also kept, with its scores, in
``annotations``: human review shows who annotated what and picks notes where annotators disagree
(:mod:`synthner_trainer.review`). A dataset version lists its note ids, so it cannot change after it is created.

Training and generator-adaptation requests are kept here too, so a request acked by the consumer survives a restart
until it has run; they share one queue because the trainer runs one job at a time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from synthner_shared.contracts import (
    AdaptationRequested,
    DatasetManifest,
    DatasetSelection,
    DocumentAnnotated,
    TrainingRequested,
)
from synthner_shared.documents import Document, DocumentEntity, write_documents

RequestStatus = Literal["pending", "running", "done", "failed"]
JobRequest = TrainingRequested | AdaptationRequested
"""A job the trainer runs, one at a time: a token-classifier training or a generator adaptation."""
_JOB_REQUEST: TypeAdapter[JobRequest] = TypeAdapter(Annotated[JobRequest, Field(discriminator="type")])

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    note_id TEXT NOT NULL UNIQUE,
    annotator TEXT NOT NULL,
    language TEXT NOT NULL,
    provenance TEXT NOT NULL,
    labels TEXT NOT NULL,
    entities TEXT NOT NULL,
    text TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dataset_versions (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dataset_documents (
    version TEXT NOT NULL REFERENCES dataset_versions(version),
    note_id TEXT NOT NULL REFERENCES documents(note_id),
    PRIMARY KEY (version, note_id)
);
CREATE TABLE IF NOT EXISTS training_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS annotations (
    note_id TEXT NOT NULL REFERENCES documents(note_id),
    annotator TEXT NOT NULL,
    prompt TEXT,
    entities TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (note_id, annotator)
);
"""


class UnknownDatasetVersionError(KeyError):
    """No dataset version has this name."""


class EmptyDatasetError(ValueError):
    """A dataset selection holds no documents."""


class LabelSetError(ValueError):
    """A document uses labels outside the trainer's label set; it is not stored."""


def check_labels(message: DocumentAnnotated, labels: Collection[str] | None) -> None:
    """Refuse (:class:`LabelSetError`) a document whose entities use a label outside ``labels`` (None: any label)."""
    if labels is None:
        return
    outside = sorted({e.label for e in message.entities} - set(labels))
    if outside:
        raise LabelSetError(f"document uses labels {outside} outside the trainer's label set")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def annotator_name(message: DocumentAnnotated) -> str:
    """``backend`` or ``backend:model``: how the store names the annotator of a document."""
    record = message.annotator
    return f"{record.backend}:{record.model}" if record.model else record.backend


def _prompt_name(message: DocumentAnnotated) -> str | None:
    prompt = message.annotator.prompt
    return None if prompt is None else f"{prompt.name}/{prompt.version}"


def manifest_for(version: str, documents: Sequence[Document], annotators: Sequence[str]) -> DatasetManifest:
    """The manifest of a document list: counts, annotators and a hash over the sorted ids and spans."""
    digest = hashlib.sha256()
    for document in sorted(documents, key=lambda d: d.id):
        spans = [[e.start, e.end, e.label] for e in document.entities]
        digest.update(json.dumps([document.id, spans], separators=(",", ":")).encode())
        digest.update(b"\n")
    labels = Counter(e.label for d in documents for e in d.entities)
    return DatasetManifest(
        version=version,
        content_hash=digest.hexdigest(),
        document_count=len(documents),
        annotators=sorted(set(annotators)),
        label_counts=dict(sorted(labels.items())),
    )


@contextmanager
def write_transaction(db: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """One write at a time on ``db`` (``BEGIN IMMEDIATE`` takes SQLite's write lock at once, so two connections to
    one file queue instead of failing mid-way), rolled back on any error."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


class DatasetStore:
    """A SQLite file of annotated documents, dataset versions and training requests. Safe to share between threads."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        """Open (or create) the store; ``read_only``: a view of a store another process owns, which creates and
        writes nothing (its reads fail with :class:`sqlite3.OperationalError` until the owner has created it)."""
        self.path = Path(path)
        self._lock = threading.Lock()
        if read_only:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock)

    # --- documents -------------------------------------------------------------------------------------------------

    def add(self, message: DocumentAnnotated, labels: Collection[str] | None = None) -> bool:
        """Store an annotated document durably; False when its note id is already stored (nothing written). With
        ``labels`` (the trainer's label set), a document using any other label is refused: :class:`LabelSetError`."""
        check_labels(message, labels)
        entities = [{"start": e.start, "end": e.end, "label": e.label} for e in message.entities]
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO documents (note_id, annotator, language, provenance, labels, entities, text,"
                " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.note_id,
                    annotator_name(message),
                    message.language,
                    message.provenance,
                    json.dumps(message.labels),
                    json.dumps(entities),
                    message.text,
                    _now(),
                ),
            )
            db.execute(
                "INSERT OR IGNORE INTO annotations (note_id, annotator, prompt, entities, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    message.note_id,
                    annotator_name(message),
                    _prompt_name(message),
                    json.dumps([e.model_dump(mode="json", exclude_none=True) for e in message.entities]),
                    _now(),
                ),
            )
            return cursor.rowcount == 1

    def count(self, min_entities: int = 0) -> int:
        """Stored documents (with at least ``min_entities`` entities; the plain count reads no document)."""
        with self._lock:
            if not min_entities:
                return int(self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
            query = "SELECT COUNT(*) FROM documents WHERE json_array_length(entities) >= ?"
            return int(self._db.execute(query, (min_entities,)).fetchone()[0])

    def note_ids(self) -> list[str]:
        """Every stored note id, in the order stored."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT note_id FROM documents ORDER BY seq").fetchall()]

    def _rows_to_documents(self, rows: Sequence[tuple[str, str, str]]) -> list[Document]:
        return [
            Document(id=note_id, text=text, entities=[DocumentEntity(**e) for e in json.loads(entities)])
            for note_id, text, entities in rows
        ]

    def new_since_trigger(self) -> int:
        """Documents stored since the last automatic training trigger."""
        with self._lock:
            return self._new_since_trigger(self._db)

    @staticmethod
    def _new_since_trigger(db: sqlite3.Connection) -> int:
        mark = db.execute("SELECT value FROM counters WHERE name = 'trigger_seq'").fetchone()
        since = int(mark[0]) if mark else 0
        return int(db.execute("SELECT COUNT(*) FROM documents WHERE seq > ?", (since,)).fetchone()[0])

    def claim_trigger(self, every: int) -> bool:
        """True (once) when ``every`` documents arrived since the last trigger; checks and marks in one transaction,
        so concurrent handlers cannot both trigger."""
        with self._transaction() as db:
            if self._new_since_trigger(db) < every:
                return False
            db.execute(
                "INSERT INTO counters (name, value)"
                " VALUES ('trigger_seq', (SELECT COALESCE(MAX(seq), 0) FROM documents))"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value"
            )
            return True

    # --- dataset versions ------------------------------------------------------------------------------------------

    def create_version(self, selection: DatasetSelection | None = None, *, min_entities: int = 0) -> DatasetManifest:
        """Freeze the selected stored documents into a new immutable dataset version (or return the named one).
        ``min_entities``: only documents with at least that many entities (the trainer's ``min_entities`` setting)."""
        selection = selection or DatasetSelection()
        if selection.dataset_version is not None:
            return self.manifest(selection.dataset_version)
        query = "SELECT note_id, annotator FROM documents WHERE json_array_length(entities) >= ?"
        parameters: list[str | int] = [min_entities]
        if selection.annotators:
            query += f" AND annotator IN ({', '.join('?' for _ in selection.annotators)})"
            parameters += selection.annotators
        query += " ORDER BY seq"
        if selection.max_documents is not None:
            query += " LIMIT ?"
            parameters.append(selection.max_documents)
        with self._transaction() as db:
            rows = db.execute(query, parameters).fetchall()
            if not rows:
                with_entities = f" with at least {min_entities} entities" if min_entities else ""
                raise EmptyDatasetError(f"the dataset selection holds no documents{with_entities}; nothing to train on")
            ids = [r[0] for r in rows]
            documents = self._load(db, ids)
            number = int(db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM dataset_versions").fetchone()[0])
            draft = manifest_for("draft", documents, [r[1] for r in rows])
            version = f"ds-{number:04d}-{draft.content_hash[:12]}"
            manifest = draft.model_copy(update={"version": version, "location": f"sqlite:{self.path.name}#{version}"})
            db.execute(
                "INSERT INTO dataset_versions (number, version, created_at, manifest) VALUES (?, ?, ?, ?)",
                (number, version, _now(), manifest.model_dump_json()),
            )
            db.executemany(
                "INSERT INTO dataset_documents (version, note_id) VALUES (?, ?)", [(version, i) for i in ids]
            )
        return manifest

    def _load(self, db: sqlite3.Connection, note_ids: Sequence[str]) -> list[Document]:
        documents: list[Document] = []
        for start in range(0, len(note_ids), 500):
            chunk = note_ids[start : start + 500]
            placeholders = ", ".join("?" for _ in chunk)  # only "?" markers; the values are bound parameters
            rows = db.execute(
                f"SELECT note_id, text, entities FROM documents WHERE note_id IN ({placeholders}) ORDER BY seq",  # noqa: S608
                chunk,
            ).fetchall()
            documents += self._rows_to_documents(rows)
        return documents

    def versions(self) -> list[DatasetManifest]:
        with self._lock:
            rows = self._db.execute("SELECT manifest FROM dataset_versions ORDER BY number").fetchall()
        return [DatasetManifest.model_validate_json(r[0]) for r in rows]

    def manifest(self, version: str) -> DatasetManifest:
        with self._lock:
            row = self._db.execute("SELECT manifest FROM dataset_versions WHERE version = ?", (version,)).fetchone()
        if row is None:
            raise UnknownDatasetVersionError(f"no dataset version {version!r}")
        return DatasetManifest.model_validate_json(row[0])

    def document_ids(self, version: str) -> list[str]:
        self.manifest(version)
        with self._lock:
            rows = self._db.execute(
                "SELECT d.note_id FROM dataset_documents v JOIN documents d ON d.note_id = v.note_id"
                " WHERE v.version = ? ORDER BY d.seq",
                (version,),
            ).fetchall()
        return [r[0] for r in rows]

    def documents(self, version: str) -> list[Document]:
        """The documents of a dataset version, in the order they were stored."""
        ids = self.document_ids(version)
        with self._lock:
            return self._load(self._db, ids)

    def export(self, version: str, path: str | Path) -> int:
        """Write a dataset version as document JSONL (atomically); returns the number of documents."""
        return write_documents(path, self.documents(version))

    # --- training requests ------------------------------------------------------------------------------------------

    def enqueue_request(self, request: JobRequest) -> bool:
        """Keep a training or adaptation request until it has run; False when this request id is already known."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO training_requests (request_id, body, status, updated_at)"
                " VALUES (?, ?, 'pending', ?)",
                (str(request.message_id), request.model_dump_json(), _now()),
            )
            return cursor.rowcount == 1

    def next_request(self) -> JobRequest | None:
        """The oldest request not yet finished (a request left ``running`` by a crash runs again)."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM training_requests WHERE status IN ('pending', 'running') ORDER BY seq LIMIT 1"
            ).fetchone()
        return _JOB_REQUEST.validate_json(row[0]) if row else None

    def set_request_status(self, request: JobRequest, status: RequestStatus, detail: str | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE training_requests SET status = ?, detail = ?, updated_at = ? WHERE request_id = ?",
                (status, detail, _now(), str(request.message_id)),
            )

    def request_status(self, request_id: str) -> tuple[RequestStatus, str | None] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status, detail FROM training_requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        return (row[0], row[1]) if row else None
