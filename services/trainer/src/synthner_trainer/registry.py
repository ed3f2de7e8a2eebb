"""Model versions on disk: immutable folders, the promotion gate, and the pointer to the current model.

The store's layout, its files and their invariants are the shared contract :mod:`synthner_shared.model_store`
(``versions/<version>/`` with ``status.json``, ``current.json``, ``.staging/``); this module is its writer. A version
folder holds the Hugging Face folder plus metrics.json, dataset_manifest.json, README.md and status.json.

A version folder is written completely (including its gate verdict in ``status.json``) under ``.staging`` and then
renamed into ``versions/`` (an atomic rename on one filesystem), so no half-written version is ever visible and a
visible version never changes. Rejected versions are kept with their metrics. Earlier published versions stay for
rollback (:meth:`ModelRegistry.rollback`), which pins the store: a version published while the pin holds is kept but
does not become current (``held_by`` says which rollback held it) until an operator releases the pin.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from synthner_shared.files import fsync_dir, fsync_tree
from synthner_shared.messaging.consumer import bounded_reason
from synthner_shared.model_store import (
    ModelStoreLayout,
    RollbackRecord,
    Verdict,
    advance_current,
    read_current,
    read_status,
    release_pin,
    roll_back,
    write_status,
)
from synthner_shared.model_store import VersionStatus as GateDecision

__all__ = [
    "GateDecision",
    "ModelRegistry",
    "ModelVersion",
    "Verdict",
    "VersionExistsError",
    "decide",
    "new_version_name",
]


def decide(
    candidate_f1: float | None,
    current_f1: float | None,
    tolerance: float,
    metric: str = "strict micro F1 on the gold set",
    current_version: str | None = None,
) -> GateDecision:
    """Publish unless the candidate's gold F1 is worse than the current model's by more than ``tolerance``.

    No current model: publish. No gold set (``candidate_f1`` None): publish, and say that nothing was gated.
    """

    def verdict(outcome: Verdict, reason: str) -> GateDecision:
        return GateDecision(
            verdict=outcome,
            metric=metric,
            candidate=candidate_f1,
            current=current_f1,
            current_version=current_version,
            tolerance=tolerance,
            reason=reason,
        )

    if candidate_f1 is None:
        return verdict("published", "no gold set configured: published without a quality gate")
    if current_f1 is None:
        return verdict("published", "no current model: the first version is published")
    if candidate_f1 >= current_f1 - tolerance:
        return verdict("published", f"{candidate_f1:.4f} >= {current_f1:.4f} - {tolerance:g}")
    return verdict("rejected", f"{candidate_f1:.4f} < {current_f1:.4f} - {tolerance:g}")


def new_version_name(dataset_hash: str) -> str:
    """``m-<UTC timestamp>-<dataset hash prefix>-<random>``: sortable by time, unique."""
    return f"m-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{dataset_hash[:8]}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    path: Path
    status: Verdict
    gate: GateDecision
    held_by: RollbackRecord | None = None
    """Set by :meth:`ModelRegistry.add` on a published version that did not become current: a rollback pins the
    store."""


def _verified(gate: GateDecision, folder: Path, verify: Callable[[Path], None]) -> GateDecision:
    try:
        verify(folder)
    except Exception as exc:  # noqa: BLE001 - whatever broke the written files, this version must not be served
        reason = bounded_reason(f"the written model did not load back: {type(exc).__name__}: {exc}", 500)
        return gate.model_copy(update={"verdict": "failed", "reason": reason})
    return gate


class VersionExistsError(FileExistsError):
    """A version with this name is already visible; versions are immutable."""


class ModelRegistry:
    """The model versions of one trainer."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.layout = ModelStoreLayout(self.root)
        self.versions_dir = self.layout.versions_dir
        self.staging_dir = self.layout.staging_dir
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def discard_staging(self) -> int:
        """Remove versions left half-written by a crash (at start-up); returns how many."""
        leftovers = [p for p in self.staging_dir.iterdir() if p.is_dir()]
        for path in leftovers:
            shutil.rmtree(path)
        return len(leftovers)

    def add(
        self,
        name: str,
        write: Callable[[Path], None],
        gate: GateDecision,
        verify: Callable[[Path], None] | None = None,
    ) -> ModelVersion:
        """Write a version with ``write(folder)`` into staging, record its verdict, then make it visible atomically.

        The written files are fsynced; a version the gate published is then checked with ``verify(folder)`` (load it
        back, predict once): if that raises, the verdict becomes ``failed`` and ``current.json`` stays. A published
        verdict moves ``current.json`` to it, unless a rollback pins the store (then ``held_by`` is set).
        """
        target = self.layout.version_dir(name)
        if target.exists():
            raise VersionExistsError(f"model version {name} already exists")
        staging = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=self.staging_dir))
        try:
            write(staging)
            fsync_tree(staging)
            if gate.verdict == "published" and verify is not None:
                gate = _verified(gate, staging, verify)
            write_status(staging, gate)
            os.rename(staging, target)
            fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        held_by = advance_current(self.layout, name) if gate.verdict == "published" else None
        return ModelVersion(name, target, gate.verdict, gate, held_by)

    def get(self, name: str) -> ModelVersion:
        """A visible version; :class:`~synthner_shared.model_store.VersionNotFound` (a ``KeyError``) if none."""
        path = self.layout.version_dir(name)
        gate = read_status(path)
        return ModelVersion(name, path, gate.verdict, gate)

    def list(self) -> list[ModelVersion]:
        return [self.get(name) for name in self.layout.version_names()]

    def current(self) -> ModelVersion | None:
        """The published version the NER API should serve, if any."""
        name = read_current(self.layout).version
        return self.get(name) if name is not None else None

    def pinned(self) -> RollbackRecord | None:
        """The rollback that pins the store, if any."""
        return read_current(self.layout).pinned

    def rollback(self, name: str, *, by: str, reason: str = "") -> tuple[ModelVersion, RollbackRecord]:
        """Point ``current`` at the published version ``name`` (usually an earlier one) and pin it there
        (:func:`synthner_shared.model_store.roll_back`); :class:`~synthner_shared.model_store.NotPublished` (a
        ``ValueError``) if it is not published, ``VersionNotFound`` (a ``KeyError``) if there is no such version."""
        version = self.get(name)
        pointer = roll_back(self.layout, name, by=by, reason=reason)
        assert pointer.pinned is not None
        return version, pointer.pinned

    def release_pin(self) -> RollbackRecord | None:
        """Release a rollback's pin (the next published version becomes current again); returns the released pin."""
        pinned = self.pinned()
        release_pin(self.layout)
        return pinned
