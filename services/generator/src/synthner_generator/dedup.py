"""Exact and near-duplicate removal across jobs, with state in SQLite that survives restarts.

Exact duplicates: the note id (SHA-256 of the text). Near duplicates: MinHash signatures (128 permutations) of the
note's word 3-shingles, with locality-sensitive hashing (32 bands of 4 rows) to find candidates, confirmed when the
estimated Jaccard similarity reaches the threshold (default 0.8). Signatures hold no readable text.

Every entry records its owner ``(job_id, note_index)``. A regenerated note for the same owner (a redelivery after a
crash) replaces that owner's earlier entry instead of counting as its duplicate, so at-least-once delivery never
turns a note into a rejected one. Several processes may share one database file (SQLite's write lock serialises
check-and-insert); replicas on different machines need a shared volume for cross-replica deduplication.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

PERMUTATIONS = 128
BANDS = 32
ROWS = PERMUTATIONS // BANDS
SHINGLE_WORDS = 3
_PRIME = (1 << 61) - 1
_rng = np.random.default_rng(20_251_123)  # fixed: signatures must be comparable across processes and restarts
_A = _rng.integers(1, 1 << 31, size=PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, 1 << 31, size=PERMUTATIONS, dtype=np.uint64)
_WORD = re.compile(r"\w+")
DEFAULT_THRESHOLD = 0.8
"""Estimated Jaccard similarity from which a note is a near duplicate (the settings' default)."""

Signature = npt.NDArray[np.uint64]
Verdict = Literal["new", "duplicate", "near_duplicate"]


def shingles(text: str) -> set[str]:
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE_WORDS:
        return {" ".join(words)}
    return {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def minhash(text: str) -> Signature:
    """The MinHash signature of the text's word 3-shingles (stable across processes)."""
    hashed = np.fromiter(
        (int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "little") for s in shingles(text)),
        dtype=np.uint64,
    )
    values = (np.outer(_A, hashed) + _B[:, None]) % _PRIME
    signature: Signature = values.min(axis=1)
    return signature


def similarity(first: Signature, second: Signature) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.mean(first == second))


def _band_keys(signature: Signature) -> list[bytes]:
    rows = signature.reshape(BANDS, ROWS)
    return [bytes([band]) + hashlib.blake2b(row.tobytes(), digest_size=8).digest() for band, row in enumerate(rows)]


def note_owner(job_id: str, note_index: int) -> str:
    """Who a planned note's entry belongs to: ``<job id>:<note index>``."""
    return f"{job_id}:{note_index}"


@dataclass(frozen=True)
class DedupResult:
    verdict: Verdict
    similarity: float


class DedupStore:
    """The persistent set of accepted notes; :meth:`admit` checks a note and, if new, records it, atomically."""

    def __init__(self, path: Path, threshold: float = DEFAULT_THRESHOLD, *, read_only: bool = False) -> None:
        """Open (or create) the database; ``read_only``: a view of a database a generator owns, which creates and
        writes nothing (it fails with :class:`sqlite3.OperationalError` while the file does not exist)."""
        self._threshold = threshold
        if read_only:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS notes (
                note_id TEXT PRIMARY KEY, owner TEXT NOT NULL, signature BLOB NOT NULL);
            CREATE INDEX IF NOT EXISTS notes_owner ON notes(owner);
            CREATE TABLE IF NOT EXISTS bands (band BLOB NOT NULL, note_id TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS bands_band ON bands(band);
            CREATE INDEX IF NOT EXISTS bands_note ON bands(note_id);
            """
        )

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM notes").fetchone()[0])

    def planned_note_ids(self, job_id: str) -> dict[int, str]:
        """Note index -> note id of each planned note of the job that was accepted (the entries :func:`note_owner`
        names); a note regenerated for the same index counts in its last accepted version."""
        prefix = f"{job_id}:"
        rows = self._db.execute(
            "SELECT owner, note_id FROM notes WHERE substr(owner, 1, ?) = ?", (len(prefix), prefix)
        ).fetchall()
        indices = ((row_owner[len(prefix) :], note_id) for row_owner, note_id in rows)
        return {int(index): note_id for index, note_id in indices if index.isdigit()}  # not job "<job id>:x"'s

    def admit(self, note_id: str, text: str, owner: str) -> DedupResult:
        """Record the note unless it duplicates (exactly or nearly) a note of another owner."""
        signature = minhash(text)
        keys = _band_keys(signature)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT owner FROM notes WHERE note_id = ?", (note_id,)).fetchone()
            if row is not None and row[0] != owner:
                db.execute("COMMIT")
                return DedupResult("duplicate", 1.0)
            best = 0.0
            placeholders = ",".join("?" * len(keys))
            candidates = db.execute(
                f"SELECT DISTINCT n.note_id, n.signature FROM bands b JOIN notes n ON n.note_id = b.note_id "  # noqa: S608 - placeholders only
                f"WHERE b.band IN ({placeholders}) AND n.owner != ?",
                (*keys, owner),
            ).fetchall()
            for _, blob in candidates:
                best = max(best, similarity(signature, np.frombuffer(blob, dtype=np.uint64)))
            if best >= self._threshold:
                db.execute("COMMIT")
                return DedupResult("near_duplicate", best)
            self._forget_owner(owner)
            db.execute("INSERT INTO notes VALUES (?, ?, ?)", (note_id, owner, signature.tobytes()))
            db.executemany("INSERT INTO bands VALUES (?, ?)", [(key, note_id) for key in keys])
            db.execute("COMMIT")
            return DedupResult("new", best)
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _forget_owner(self, owner: str) -> None:
        old = [r[0] for r in self._db.execute("SELECT note_id FROM notes WHERE owner = ?", (owner,)).fetchall()]
        for note_id in old:
            self._db.execute("DELETE FROM bands WHERE note_id = ?", (note_id,))
            self._db.execute("DELETE FROM notes WHERE note_id = ?", (note_id,))
