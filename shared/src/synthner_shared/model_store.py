"""The model store: the folder the trainer writes model versions into and the NER API serves them from.

Layout under the store's root::

    versions/<version>/   one model version: a model folder plus status.json (the promotion gate's verdict)
    current.json          {"version": ..., "history": [...], "pinned": {...} | null}: the published version to serve,
                          every earlier one, and the operator's rollback that pins it (if any)
    .staging/             versions being written; renamed into versions/ only when complete
    .lock                 taken (``flock``) around every read-modify-write of current.json

Invariants (the writer, :mod:`synthner_trainer.registry`, keeps them; readers rely on them):

- a folder in ``versions/`` is complete and never changes: it is written under ``.staging/`` with its
  ``status.json`` and renamed into ``versions/`` (one atomic rename on one filesystem);
- ``status.json`` and ``current.json`` are replaced atomically (temporary file, fsync, rename, fsync of the folder),
  so a reader sees the old file or the new one, never a mix;
- a version's files are fsynced before its folder is renamed into ``versions/``, and a version the gate passed is
  loaded back and given a smoke prediction first: one that fails has the verdict ``failed``;
- ``current.json`` names a version that exists in ``versions/`` with the verdict ``published``
  (:func:`write_current` refuses anything else);
- ``current.json`` changes only under the store's lock (:func:`store_lock`): the trainer publishing a version
  (:func:`advance_current`) and an operator rolling back (:func:`roll_back`) may run in two processes at once.

Rollback pins the store: :func:`roll_back` makes an earlier published version current and records who asked, why and
when in ``pinned``. While a pin is there, a newly published version is stored (verdict ``published``) but does not
become current, and is not announced: the pin holds until an operator releases it (:func:`release_pin`), so the next
training never silently undoes a rollback. Releasing keeps the pinned version current; the next publish moves on.

A missing file reads as "nothing there" where the layout allows it (no ``current.json`` yet) and as
:class:`VersionNotFound` where it does not (a version without ``status.json``); a file that is not what the contract
says raises :class:`CorruptStoreFile`, naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from synthner_shared.files import write_text_atomic

VERSIONS_DIR = "versions"
STAGING_DIR = ".staging"
STATUS_FILE = "status.json"
CURRENT_FILE = "current.json"
LOCK_FILE = ".lock"

Verdict = Literal["published", "rejected", "failed"]
"""``published``: passed the gate; ``rejected``: the gate said no; ``failed``: passed the gate, but the written folder
did not load back (it is kept for inspection and never served)."""
_Model = TypeVar("_Model", bound=BaseModel)


class ModelStoreError(Exception):
    """Something in the model store is not what the contract says."""


class CorruptStoreFile(ModelStoreError, ValueError):
    """A store file that is not valid JSON or not of the contract's shape."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class VersionNotFound(ModelStoreError, KeyError):
    """No version of that name in ``versions/`` (no folder, or no ``status.json`` in it)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NotPublished(ModelStoreError, ValueError):
    """A version the gate rejected was to become current."""


class VersionStatus(BaseModel):
    """``versions/<v>/status.json``: the promotion gate's verdict on a version and the numbers behind it."""

    verdict: Verdict
    metric: str
    candidate: float | None
    current: float | None
    current_version: str | None
    tolerance: float
    reason: str


class _VerdictOnly(BaseModel):
    """What a server needs of ``status.json``: the verdict alone (fields it does not use may change freely)."""

    model_config = ConfigDict(extra="ignore")

    verdict: Verdict


class RollbackRecord(BaseModel):
    """``current.json``'s ``pinned``: an operator rolled the cluster back to ``version`` (see the module's notes)."""

    version: str
    from_version: str | None = Field(description="The version that was current before the rollback.")
    by: str = Field(min_length=1, max_length=200, description="Who rolled back (an operator's or admin key's name).")
    reason: str = Field(max_length=500)
    at: AwareDatetime


class CurrentPointer(BaseModel):
    """``current.json``: the published version to serve, every version that was current (oldest first), and the
    rollback that pins it, if any."""

    version: str | None = None
    history: list[str] = Field(default_factory=list)
    pinned: RollbackRecord | None = None


@dataclass(frozen=True)
class ModelStoreLayout:
    """The paths of one model store."""

    root: Path

    @property
    def versions_dir(self) -> Path:
        return self.root / VERSIONS_DIR

    @property
    def staging_dir(self) -> Path:
        return self.root / STAGING_DIR

    @property
    def current_file(self) -> Path:
        return self.root / CURRENT_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    def version_dir(self, version: str) -> Path:
        return self.versions_dir / version

    def status_file(self, version: str) -> Path:
        return self.version_dir(version) / STATUS_FILE

    def version_names(self) -> list[str]:
        """Names of the visible versions (folders in ``versions/`` with a ``status.json``), sorted."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if (p / STATUS_FILE).is_file())


def write_json_atomic(path: Path, data: object) -> None:
    """Replace ``path`` with ``data`` as JSON: a temporary file beside it, fsync, rename, fsync of the folder."""
    write_text_atomic(path, json.dumps(data, indent=2))


def _read_model(path: Path, model: type[_Model]) -> _Model:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptStoreFile(path, "not UTF-8 text") from exc
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in exc.errors())
        raise CorruptStoreFile(path, f"not a valid {path.name} ({problems})") from exc


def write_status(version_dir: Path, status: VersionStatus) -> None:
    """Write a version's ``status.json`` (into its staging folder, before the version becomes visible)."""
    write_json_atomic(version_dir / STATUS_FILE, status.model_dump(mode="json"))


def read_status(version_dir: Path) -> VersionStatus:
    """A version's full ``status.json``; :class:`VersionNotFound` without one, :class:`CorruptStoreFile` if bad."""
    path = version_dir / STATUS_FILE
    if not path.is_file():
        raise VersionNotFound(f"no model version {version_dir.name!r}")
    return _read_model(path, VersionStatus)


def read_verdict(version_dir: Path) -> Verdict:
    """A version's gate verdict alone (what a server needs); errors as :func:`read_status`."""
    path = version_dir / STATUS_FILE
    if not path.is_file():
        raise VersionNotFound(f"no model version {version_dir.name!r}")
    return _read_model(path, _VerdictOnly).verdict


def read_current(layout: ModelStoreLayout) -> CurrentPointer:
    """``current.json``, or an empty pointer when the store has none yet; :class:`CorruptStoreFile` if bad."""
    if not layout.current_file.is_file():
        return CurrentPointer()
    return _read_model(layout.current_file, CurrentPointer)


def write_current(layout: ModelStoreLayout, pointer: CurrentPointer) -> None:
    """Replace ``current.json``; the version it names must exist and be published."""
    if pointer.version is not None:
        verdict = read_verdict(layout.version_dir(pointer.version))
        if verdict != "published":
            raise NotPublished(
                f"model version {pointer.version} is {verdict} (not published); only published versions can be current"
            )
    write_json_atomic(layout.current_file, pointer.model_dump(mode="json"))


@contextlib.contextmanager
def store_lock(layout: ModelStoreLayout) -> Iterator[None]:
    """Hold the store's exclusive lock (``flock`` on ``.lock``; it also excludes other threads, each taking it through
    its own open file) for a read-modify-write of ``current.json``."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with layout.lock_file.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def advance_current(layout: ModelStoreLayout, version: str) -> RollbackRecord | None:
    """Make a newly published ``version`` current, unless a rollback pins the store: then ``current.json`` stays and
    the pin that held the version back is returned (the caller must not announce the version)."""
    with store_lock(layout):
        pointer = read_current(layout)
        if pointer.pinned is not None:
            return pointer.pinned
        write_current(layout, CurrentPointer(version=version, history=[*pointer.history, version]))
        return None


def roll_back(
    layout: ModelStoreLayout, version: str, *, by: str, reason: str = "", at: datetime | None = None
) -> CurrentPointer:
    """Make the published ``version`` current and pin it there, recording ``by``, ``reason`` and the time; returns
    the new pointer. :class:`VersionNotFound` or :class:`NotPublished` if ``version`` cannot be served.

    The store side of a cluster-wide rollback: whoever calls it then announces ``ModelRolledBack`` (the trainer does,
    on a ``ModelRollbackRequested``), which every NER API replica follows."""
    with store_lock(layout):
        pointer = read_current(layout)
        record = RollbackRecord(
            version=version, from_version=pointer.version, by=by, reason=reason, at=at or datetime.now(UTC)
        )
        rolled_back = CurrentPointer(version=version, history=[*pointer.history, version], pinned=record)
        write_current(layout, rolled_back)
    return rolled_back


def release_pin(layout: ModelStoreLayout) -> CurrentPointer:
    """Remove a rollback's pin: the pinned version stays current, the next published version becomes current again.
    Returns the new pointer (unchanged when nothing was pinned)."""
    with store_lock(layout):
        pointer = read_current(layout)
        if pointer.pinned is None:
            return pointer
        released = pointer.model_copy(update={"pinned": None})
        write_current(layout, released)
    return released
