"""Review data in the trainer's dataset store file: the review queue per dataset version and the reviews.

A review is appended, never updated: ``reviews`` keeps every save (who, when, the spans), and the machine's
annotation stays in ``documents``/``annotations`` untouched, so a correction can always be compared with what it
corrected. The latest review of a note is its gold version. Its own SQLite connection to the same file (WAL lets the
trainer write while a reviewer saves); the tables are created here, beside the dataset store's.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from synthner_shared.contracts.spans import check_spans
from synthner_shared.documents import Document, DocumentEntity
from synthner_trainer.review.queue import Annotation, Candidate, QueuePolicy, Span, select_for_review
from synthner_trainer.store import DatasetStore, UnknownDatasetVersionError, write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_queue (
    version TEXT NOT NULL REFERENCES dataset_versions(version),
    note_id TEXT NOT NULL REFERENCES documents(note_id),
    reason TEXT NOT NULL,
    position INTEGER NOT NULL,
    queued_at TEXT NOT NULL,
    PRIMARY KEY (version, note_id)
);
CREATE TABLE IF NOT EXISTS reviews (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    note_id TEXT NOT NULL REFERENCES documents(note_id),
    reviewer TEXT NOT NULL,
    entities TEXT NOT NULL,
    machine_annotator TEXT NOT NULL,
    machine_entities TEXT NOT NULL,
    reviewed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_by_note ON reviews (note_id, seq);
"""


_LATEST = (
    "SELECT r.note_id, d.text, r.reviewer, r.reviewed_at, r.entities, r.machine_annotator, r.machine_entities"
    " FROM reviews r JOIN documents d ON d.note_id = r.note_id"
    " WHERE r.seq IN (SELECT MAX(seq) FROM reviews GROUP BY note_id) ORDER BY d.seq"
)
_LATEST_PER_REVIEWER = (
    "SELECT r.note_id, d.text, r.reviewer, r.reviewed_at, r.entities, r.machine_annotator, r.machine_entities"
    " FROM reviews r JOIN documents d ON d.note_id = r.note_id"
    " WHERE r.seq IN (SELECT MAX(seq) FROM reviews GROUP BY note_id, reviewer) ORDER BY d.seq"
)


class UnknownNoteError(KeyError):
    """No stored document has this note id."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class QueueItem:
    note_id: str
    reason: str
    reviews: int


@dataclass(frozen=True)
class Review:
    reviewer: str
    reviewed_at: str
    entities: list[dict[str, Any]]


@dataclass(frozen=True)
class ReviewNote:
    """A note as the review page shows it: the text, the entities trained on, every annotator's spans, the reviews."""

    note_id: str
    text: str
    language: str
    entities: list[dict[str, Any]]
    annotations: list[Annotation]
    reviews: list[Review]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _spans(raw: str) -> tuple[Span, ...]:
    return tuple(Span(int(e["start"]), int(e["end"]), str(e["label"]), e.get("score")) for e in json.loads(raw))


class ReviewStore:
    """Review queue and reviews next to a :class:`DatasetStore` (same file, own connection). Thread-safe."""

    def __init__(self, dataset: DatasetStore, *, owns_dataset: bool = False) -> None:
        """Review tables beside ``dataset`` (created when missing); ``owns_dataset``: :meth:`close` closes it too."""
        self.dataset = dataset
        self._owns_dataset = owns_dataset
        self._lock = threading.Lock()
        self._db = sqlite3.connect(dataset.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, path: Path) -> ReviewStore:
        """The review store of the dataset store file at ``path`` (created when missing)."""
        return cls(DatasetStore(path), owns_dataset=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._owns_dataset:
            self.dataset.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock)

    # --- annotations -----------------------------------------------------------------------------------------------

    def annotations(self, note_id: str) -> list[Annotation]:
        """Every annotator's spans of a note; a document stored before annotations were kept shows its one."""
        with self._lock:
            rows = self._db.execute(
                "SELECT annotator, prompt, entities FROM annotations WHERE note_id = ? ORDER BY received_at, annotator",
                (note_id,),
            ).fetchall()
            if not rows:
                rows = self._db.execute(
                    "SELECT annotator, NULL, entities FROM documents WHERE note_id = ?", (note_id,)
                ).fetchall()
        return [Annotation(annotator, _spans(entities), prompt) for annotator, prompt, entities in rows]

    def annotated_documents(self) -> dict[str, list[Document]]:
        """Every annotator's documents (``id``: note id), for agreement figures."""
        with self._lock:
            rows = self._db.execute(
                "SELECT a.annotator, d.note_id, d.text, a.entities FROM annotations a"
                " JOIN documents d ON d.note_id = a.note_id ORDER BY d.seq"
            ).fetchall()
        systems: dict[str, list[Document]] = {}
        for annotator, note_id, text, entities in rows:
            spans = [DocumentEntity(start=s.start, end=s.end, label=s.label) for s in _spans(entities)]
            systems.setdefault(annotator, []).append(Document(id=note_id, text=text, entities=spans))
        return systems

    # --- queue -----------------------------------------------------------------------------------------------------

    def enqueue(self, version: str, policy: QueuePolicy) -> list[QueueItem]:
        """Mark the notes of dataset version ``version`` that ``policy`` selects for review (notes already queued
        keep their place and reason); returns the version's whole queue."""
        note_ids = self.dataset.document_ids(version)
        candidates = [Candidate(note_id, tuple(self.annotations(note_id))) for note_id in note_ids]
        chosen = select_for_review(candidates, policy)
        with self._transaction() as db:
            start = int(
                db.execute(
                    "SELECT COALESCE(MAX(position), 0) FROM review_queue WHERE version = ?", (version,)
                ).fetchone()[0]
            )
            db.executemany(
                "INSERT OR IGNORE INTO review_queue (version, note_id, reason, position, queued_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(version, note_id, reason, start + n, _now()) for n, (note_id, reason) in enumerate(chosen, 1)],
            )
        return self.queue(version)

    def latest_queued_version(self) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT q.version FROM review_queue q JOIN dataset_versions v ON v.version = q.version"
                " ORDER BY v.number DESC LIMIT 1"
            ).fetchone()
        return None if row is None else str(row[0])

    def queue(self, version: str) -> list[QueueItem]:
        """The review queue of a dataset version in order, each note with how often it was reviewed."""
        self.dataset.manifest(version)
        with self._lock:
            rows = self._db.execute(
                "SELECT q.note_id, q.reason, (SELECT COUNT(*) FROM reviews r WHERE r.note_id = q.note_id)"
                " FROM review_queue q WHERE q.version = ? ORDER BY q.position",
                (version,),
            ).fetchall()
        return [QueueItem(note_id, reason, int(count)) for note_id, reason, count in rows]

    # --- reviews ---------------------------------------------------------------------------------------------------

    def note(self, note_id: str) -> ReviewNote:
        with self._lock:
            row = self._db.execute(
                "SELECT text, language, entities FROM documents WHERE note_id = ?", (note_id,)
            ).fetchone()
            reviews = self._db.execute(
                "SELECT reviewer, reviewed_at, entities FROM reviews WHERE note_id = ? ORDER BY seq", (note_id,)
            ).fetchall()
        if row is None:
            raise UnknownNoteError(f"no stored document with note id {note_id[:16]}...")
        return ReviewNote(
            note_id,
            row[0],
            row[1],
            json.loads(row[2]),
            self.annotations(note_id),
            [Review(reviewer, at, json.loads(entities)) for reviewer, at, entities in reviews],
        )

    def save_review(self, note_id: str, reviewer: str, entities: Sequence[DocumentEntity]) -> Review:
        """Append a review of a note (spans checked against its text: :class:`ValueError` naming the problem, never
        the text); the machine's annotation it corrects is recorded beside it and stays as it was."""
        with self._lock:
            row = self._db.execute(
                "SELECT text, annotator, entities FROM documents WHERE note_id = ?", (note_id,)
            ).fetchone()
        if row is None:
            raise UnknownNoteError(f"no stored document with note id {note_id[:16]}...")
        text, annotator, machine = row
        spans = [{"start": e.start, "end": e.end, "label": e.label} for e in entities]
        check_spans(text, list(entities))  # its message names offsets and labels, never the text
        review = Review(reviewer, _now(), spans)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO reviews (note_id, reviewer, entities, machine_annotator, machine_entities, reviewed_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (note_id, reviewer, json.dumps(spans), annotator, machine, review.reviewed_at),
            )
        return review

    def _latest_reviews(self, per_reviewer: bool) -> list[tuple[str, str, str, str, str, str, str]]:
        with self._lock:
            return self._db.execute(_LATEST_PER_REVIEWER if per_reviewer else _LATEST).fetchall()

    def gold(self) -> list[Document]:
        """The reviewed documents (each note's latest review), as gold: ``provenance: "human"``, reviewer, review
        time, and the machine's annotation as ``machine_entities``/``machine_annotator``."""
        return [
            Document.model_validate(
                {
                    "id": note_id,
                    "text": text,
                    "entities": json.loads(entities),
                    "provenance": "human",
                    "reviewer": reviewer,
                    "reviewed_at": at,
                    "machine_annotator": annotator,
                    "machine_entities": json.loads(machine),
                }
            )
            for note_id, text, reviewer, at, entities, annotator, machine in self._latest_reviews(per_reviewer=False)
        ]

    def reviewer_documents(self) -> dict[str, list[Document]]:
        """Each reviewer's latest review of each note they reviewed (kappa between reviewers)."""
        systems: dict[str, list[Document]] = {}
        for note_id, text, reviewer, _at, entities, _a, _m in self._latest_reviews(per_reviewer=True):
            systems.setdefault(reviewer, []).append(
                Document.model_validate({"id": note_id, "text": text, "entities": json.loads(entities)})
            )
        return systems


def resolve_version(store: ReviewStore, version: str | None) -> str:
    """``version``, or the newest dataset version (one with a queue first); :class:`UnknownDatasetVersionError`."""
    if version is not None:
        store.dataset.manifest(version)
        return version
    queued = store.latest_queued_version()
    if queued is not None:
        return queued
    versions = store.dataset.versions()
    if not versions:
        raise UnknownDatasetVersionError("the store holds no dataset version yet (synthner dataset create)")
    return versions[-1].version
