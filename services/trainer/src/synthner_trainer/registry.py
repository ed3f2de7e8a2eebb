"""Model versions on disk: immutable folders, the promotion gate, and the pointer to the current model.

Layout under ``models_dir``::

    versions/<version>/   Hugging Face folder + metrics.json + dataset_manifest.json + README.md + status.json
    current.json          {"version": ..., "history": [...]}: the published version the NER API should serve
    .staging/             versions being written; renamed into versions/ only when complete

A version folder is written completely (including its gate verdict in ``status.json``) under ``.staging`` and then
renamed into ``versions/`` (an atomic rename on one filesystem), so no half-written version is ever visible and a
visible version never changes. Rejected versions are kept with their metrics. Earlier published versions stay for
rollback (:meth:`ModelRegistry.rollback`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

Verdict = Literal["published", "rejected"]


class GateDecision(BaseModel):
    """The promotion gate's verdict and the numbers behind it."""

    verdict: Verdict
    metric: str
    candidate: float | None
    current: float | None
    current_version: str | None
    tolerance: float
    reason: str


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


def _write_json_atomic(path: Path, data: object) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ModelVersion:
    name: str
    path: Path
    status: Verdict
    gate: GateDecision


class VersionExistsError(FileExistsError):
    """A version with this name is already visible; versions are immutable."""


class ModelRegistry:
    """The model versions of one trainer."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.staging_dir = self.root / ".staging"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def discard_staging(self) -> int:
        """Remove versions left half-written by a crash (at start-up); returns how many."""
        leftovers = [p for p in self.staging_dir.iterdir() if p.is_dir()]
        for path in leftovers:
            shutil.rmtree(path)
        return len(leftovers)

    def add(self, name: str, write: Callable[[Path], None], gate: GateDecision) -> ModelVersion:
        """Write a version with ``write(folder)`` into staging, record its verdict, then make it visible atomically.

        A published verdict also moves ``current.json`` to it.
        """
        target = self.versions_dir / name
        if target.exists():
            raise VersionExistsError(f"model version {name} already exists")
        staging = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=self.staging_dir))
        try:
            write(staging)
            _write_json_atomic(staging / "status.json", gate.model_dump(mode="json"))
            os.rename(staging, target)
            _fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if gate.verdict == "published":
            self._set_current(name)
        return ModelVersion(name, target, gate.verdict, gate)

    def get(self, name: str) -> ModelVersion:
        path = self.versions_dir / name
        status_file = path / "status.json"
        if not status_file.is_file():
            raise KeyError(f"no model version {name!r}")
        gate = GateDecision.model_validate_json(status_file.read_text(encoding="utf-8"))
        return ModelVersion(name, path, gate.verdict, gate)

    def list(self) -> list[ModelVersion]:
        return [self.get(p.name) for p in sorted(self.versions_dir.iterdir()) if (p / "status.json").is_file()]

    def _pointer(self) -> dict[str, object]:
        path = self.root / "current.json"
        if not path.is_file():
            return {"version": None, "history": []}
        data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def current(self) -> ModelVersion | None:
        """The published version the NER API should serve, if any."""
        name = self._pointer().get("version")
        return self.get(name) if isinstance(name, str) else None

    def _set_current(self, name: str) -> None:
        history = self._pointer().get("history")
        entries = [*history, name] if isinstance(history, list) else [name]
        _write_json_atomic(self.root / "current.json", {"version": name, "history": entries})

    def rollback(self, name: str) -> ModelVersion:
        """Point ``current`` back at an earlier published version."""
        version = self.get(name)
        if version.status != "published":
            raise ValueError(f"model version {name} was rejected by the gate; only published versions can be current")
        self._set_current(name)
        return version
