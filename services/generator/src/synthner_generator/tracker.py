"""The job tracker: folds GenerationProgress events into per-job counts in SQLite, for ``synthner status``.

Why events on the broker and one tracker: every generator replica handles parts of the same job, so no replica knows
a job's totals; each part's outcome travels as one GenerationProgress event (published with the part's notes, before
the part is acked), and a single tracker process owns the state. A part is keyed by ``(job_id, first_index)`` and
written with an upsert, so a redelivered part replaces its earlier event instead of adding to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from synthner_shared.contracts import Envelope, GenerationProgress

State = Literal["unknown", "refused", "running", "done"]


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: State
    requested: int = 0
    generated: int = 0
    rejected: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failed: int = 0
    reason: str | None = None

    @property
    def finished(self) -> int:
        return self.generated + self.rejected + self.duplicates + self.quarantined + self.failed

    @property
    def quarantined_share(self) -> float:
        return self.quarantined / self.finished if self.finished else 0.0


class JobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS jobs (
                job_id TEXT PRIMARY KEY, requested INTEGER NOT NULL, refused_reason TEXT);
            CREATE TABLE IF NOT EXISTS parts (
                job_id TEXT NOT NULL, first_index INTEGER NOT NULL, requested INTEGER NOT NULL,
                generated INTEGER NOT NULL, rejected INTEGER NOT NULL, duplicates INTEGER NOT NULL,
                quarantined INTEGER NOT NULL, failed INTEGER NOT NULL, PRIMARY KEY (job_id, first_index));
            """
        )

    def close(self) -> None:
        self._db.close()

    def record(self, event: GenerationProgress) -> None:
        if event.event == "part":
            self._db.execute(
                "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.job_id,
                    event.first_index,
                    event.requested,
                    event.generated,
                    event.rejected,
                    event.duplicates,
                    event.quarantined,
                    event.failed,
                ),
            )
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?)",
                (event.job_id, event.requested, event.reason if event.event == "refused" else None),
            )

    def job_ids(self) -> list[str]:
        """Every job the tracker has heard of (accepted, refused, or with a part done), sorted."""
        rows = self._db.execute("SELECT job_id FROM jobs UNION SELECT job_id FROM parts ORDER BY 1").fetchall()
        return [str(row[0]) for row in rows]

    def status(self, job_id: str) -> JobStatus:
        job = self._db.execute("SELECT requested, refused_reason FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        sums = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(generated), 0), COALESCE(SUM(rejected), 0), COALESCE(SUM(duplicates), 0),"
            " COALESCE(SUM(quarantined), 0), COALESCE(SUM(failed), 0) FROM parts WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        parts, generated, rejected, duplicates, quarantined, failed = (int(v) for v in sums)
        if job is None and not parts:
            return JobStatus(job_id, "unknown")
        requested = int(job[0]) if job is not None else 0
        reason = job[1] if job is not None else None
        finished = generated + rejected + duplicates + quarantined + failed
        state: State = "refused" if reason else ("done" if job is not None and finished >= requested else "running")
        return JobStatus(job_id, state, requested, generated, rejected, duplicates, quarantined, failed, reason)


class Tracker:
    """The consumer handler: records an event, publishes nothing."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    async def handle(self, event: GenerationProgress) -> Sequence[Envelope]:
        self.store.record(event)
        return []


def progress_key(event: GenerationProgress) -> str:
    """Idempotency key: one per job event and part, so copies of a redelivered part are skipped."""
    return f"{event.job_id}:{event.event}:{event.first_index}:{event.message_id}"
