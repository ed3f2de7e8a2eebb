"""The served model and its hot swap: load a version in the background, then replace the current one atomically.

Every batch takes the current model once, so a request is answered wholly by one version (reported in the
response), and a swap never fails or mixes requests. The previous model stays loaded for an instant rollback for a
grace period (``previous_grace_s``), then its weights are released (a batch already running on it finishes first):
a rollback after that loads it from disk again. One model's memory in steady state, two only around a swap.

A version whose files do not load (truncated weights, a folder not yet fully visible on this replica's volume) never
replaces the served model: a named version fails with :class:`ModelLoadFailed` and the current one stays. A replica
that serves nothing yet (start-up) falls back to the newest version that loads and records why in
:attr:`ModelRegistry.fallback` (``/readyz`` and the metrics say so).

A replica never moves to a version older than the one it serves unless told to: by a rollback
(:meth:`ModelRegistry.follow_rollback`, on ``ModelRolledBack``), by the store's rollback pin (``current.json``'s
``pinned``), or by an operator naming the version in a reload. A reload without a version, a late ``ModelPublished``
and the start-up fallback never go back; while the store is pinned, nothing newer than the pin is served.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from synthner_shared.messaging.consumer import bounded_reason
from synthner_shared.model_store import (
    CurrentPointer,
    ModelStoreError,
    ModelStoreLayout,
    read_current,
    read_verdict,
)
from synthner_shared.ner.encoding import ScoredSpan

log = logging.getLogger(__name__)


SpanPrediction = ScoredSpan
"""What the serving predictor returns per entity: the shared predictor's scored span."""


class Predictor(Protocol):
    """Character-span NER over whole texts (windows, offsets and merging are the predictor's job)."""

    def annotate(self, texts: Sequence[str]) -> list[list[SpanPrediction]]: ...


Loader = Callable[[Path], Predictor]


class ModelNotFound(LookupError):
    """No model to serve: the store has no published version, or there is nothing to roll back to."""


class UnknownModelVersion(ModelNotFound):
    """A version was asked for by name that the store does not hold as published."""


class ModelLoadFailed(RuntimeError):
    """A published version's files did not load; the model served before stays."""


@dataclass(frozen=True)
class Fallback:
    """Why the replica serves another version than the store's default: the default did not load."""

    wanted: str
    reason: str


@dataclass(frozen=True)
class LoadedModel:
    version: str
    path: Path
    predictor: Predictor
    labels: list[str]
    base_model: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def describe_model(path: Path, predictor: Predictor) -> LoadedModel:
    """What is served from ``path``: its version is the folder's name (``versions/<v>/`` in the store)."""
    config = _read_json(path / "config.json")
    id2label = config.get("id2label", {})
    labels = sorted({str(v)[2:] for v in id2label.values() if str(v)[:2] in {"B-", "I-"}})
    return LoadedModel(
        version=path.name,
        path=path,
        predictor=predictor,
        labels=labels,
        base_model=config.get("_name_or_path"),
        metrics=_read_json(path / "metrics.json"),
        serving=dict(getattr(predictor, "serving_info", {})),
    )


class _Released:
    """The predictor of a previous model whose weights were released after the grace period."""

    def annotate(self, texts: Sequence[str]) -> list[list[SpanPrediction]]:
        raise ModelNotFound("the previous model's weights were released; load it again")


RELEASED: Predictor = _Released()


class ModelRegistry:
    """Knows the model store, holds the current and the previous model, and swaps them.

    ``previous_grace_s``: how long the previous model's weights stay loaded after a swap (None: until the next swap);
    :attr:`previous` then still names it (``predictor`` is :data:`RELEASED`) and :attr:`previous_released` is set.
    """

    def __init__(
        self,
        loader: Loader,
        store: Path | None = None,
        fixed: Path | None = None,
        previous_grace_s: float | None = None,
    ) -> None:
        if store is None and fixed is None:
            raise ValueError("a model store or a fixed model folder is needed")
        self._previous_grace_s = previous_grace_s
        self._release: asyncio.TimerHandle | None = None
        self.previous_released = asyncio.Event()
        self._loader = loader
        self._store = store
        self._layout = ModelStoreLayout(store) if store is not None else None
        self._fixed = fixed
        self._lock = asyncio.Lock()
        self._swapped = asyncio.Condition()
        self.current: LoadedModel | None = None
        self.previous: LoadedModel | None = None
        self.fallback: Fallback | None = None

    def servable_versions(self) -> list[str]:
        """Published versions of the store (the layout of :mod:`synthner_shared.model_store`: ``versions/<v>/``
        with ``status.json`` verdict ``published``), oldest first; rejected, half-written and unreadable versions are
        never served."""
        if self._layout is None:
            return []
        return [name for name in self._layout.version_names() if self._servable(name)]

    def _servable(self, version: str) -> bool:
        assert self._layout is not None
        folder = self._layout.version_dir(version)
        if not (folder / "config.json").is_file():
            return False
        try:
            return read_verdict(folder) == "published"
        except ModelStoreError as exc:
            log.warning("not serving model version %s: %s", version, exc)
            return False

    def store_pointer(self) -> CurrentPointer:
        """The store's ``current.json`` (empty without a store, or when it is unreadable: that is logged)."""
        if self._layout is None:
            return CurrentPointer()
        try:
            return read_current(self._layout)
        except ModelStoreError as exc:
            log.warning("ignoring the current pointer: %s", exc)
            return CurrentPointer()

    def pinned_version(self) -> str | None:
        """The version a rollback pinned the store to, if any."""
        pinned = self.store_pointer().pinned
        return pinned.version if pinned is not None else None

    def _default_version(self, servable: list[str]) -> str:
        """The trainer's current pointer when it names a servable version, else the newest published one."""
        pointed = self.store_pointer().version
        if pointed is not None and pointed in servable:
            return pointed
        if not servable:
            raise ModelNotFound(f"no published model version in {self._store}")
        return servable[-1]

    def _path_of(self, version: str | None) -> Path:
        if self._fixed is not None and version is None:
            return self._fixed
        if self._layout is None:
            raise ModelNotFound("this replica serves a fixed model folder; it has no versions to choose from")
        servable = self.servable_versions()
        if version is None:
            version = self._default_version(servable)
        elif version not in servable:
            raise UnknownModelVersion(f"unknown or unpublished model version {version!r}")
        return self._layout.version_dir(version)

    @property
    def current_version(self) -> str | None:
        return self.current.version if self.current is not None else None

    def is_older_than_current(self, version: str) -> bool:
        """Whether ``version`` precedes the served one in the store (version names sort by time: the trainer's
        ``m-<UTC timestamp>-…``); a replica moves back only when told to (rollback, a reload naming the version)."""
        return self.current is not None and self._layout is not None and version < self.current.version

    def _candidates(self, version: str | None) -> list[Path]:
        """The folders to try, in order: the one asked for; at start-up with none asked for, the default, then every
        other published version, newest first (while a rollback pins the store, none newer than the pin)."""
        first = self._path_of(version)
        if version is not None or self.current is not None or self._layout is None:
            return [first]
        pinned = self.pinned_version()
        others = [
            self._layout.version_dir(v)
            for v in reversed(self.servable_versions())
            if pinned is None or v <= pinned  # a rollback moved away from the newer ones
        ]
        return [first, *(path for path in others if path != first)]

    def _moves_back_untold(self, path: Path) -> bool:
        """Whether serving ``path`` (the store's default, not named by anyone) would move this replica back without a
        rollback saying so: the replica then keeps what it serves."""
        return (
            self.current is not None
            and self._layout is not None
            and path.name < self.current.version
            and path.name != self.pinned_version()
        )

    async def load(self, version: str | None = None) -> LoadedModel:
        """Load a version (default: the store's current, else the newest) off the event loop, then make it current.
        Returns it; :class:`ModelLoadFailed` if no candidate loads (the served model, if any, stays).

        Without ``version``, a default older than the served model is not taken unless a rollback pinned the store
        to it; a named ``version`` is an operator's choice and is taken even if older."""
        async with self._lock:
            candidates = self._candidates(version)
            if self.current is not None and self.current.path == candidates[0]:
                return self.current
            if version is None and self._moves_back_untold(candidates[0]):
                log.info("keeping model %s: the store's %s is older", self.current_version, candidates[0].name)
                assert self.current is not None
                return self.current
            model = await self._swap_to(candidates)
        await self._notify()
        return model

    async def follow_rollback(
        self, version: str, rolled_back_at: datetime, from_version: str | None = None
    ) -> LoadedModel:
        """Serve ``version`` because an operator rolled the cluster back to it (``ModelRolledBack``), even though it is
        older. A rollback the store has moved past since (:meth:`rollback_superseded`) is ignored.
        :class:`ModelLoadFailed` if the version does not load (the served one stays); :class:`UnknownModelVersion` if it
        is not published here."""
        async with self._lock:
            wanted: str | None = version
            if self.rollback_superseded(version, rolled_back_at, from_version):
                log.info("ignoring the rollback to %s: the model store has moved on since", version)
                if self.current is not None:
                    return self.current
                wanted = None  # nothing served yet: the store's default
            candidates = self._candidates(wanted)
            if self.current is not None and self.current.path == candidates[0]:
                return self.current
            model = await self._swap_to(candidates)
            log.info("rolled back to model %s", model.version)
        await self._notify()
        return model

    def rollback_superseded(self, version: str, rolled_back_at: datetime, from_version: str | None) -> bool:
        """Whether the store shows a later state than a rollback to ``version``: a later rollback to another version,
        or no pin and a newer current version (the pin was released and a newer version published). A store that
        still shows the state before the rollback (current ``from_version``, no pin: a volume that lags) is not."""
        pointer = self.store_pointer()
        if pointer.pinned is not None:
            return pointer.pinned.version != version and pointer.pinned.at > rolled_back_at
        current = pointer.version
        return current is not None and current > version and current != from_version

    async def _swap_to(self, candidates: Sequence[Path]) -> LoadedModel:
        """Make the first loadable candidate current (the previous model, if it is the one, without loading)."""
        failures: list[Fallback] = []
        if (
            self.previous is not None
            and self.previous.path == candidates[0]
            and self.previous.predictor is not RELEASED
        ):
            model = self.previous
        else:
            path, predictor, failures = await self._first_loadable(candidates)
            model = describe_model(path, predictor)
        self.previous, self.current = self.current, model
        self._release_previous_later()
        self.fallback = failures[0] if failures else None
        log.info("serving model %s (previous %s)", model.version, self.previous.version if self.previous else None)
        if self.fallback is not None:
            log.warning("fell back to model %s: %s did not load", model.version, self.fallback.wanted)
        return model

    def _release_previous_later(self) -> None:
        """Release the previous model's weights once the grace period after this swap has passed."""
        if self._release is not None:
            self._release.cancel()
            self._release = None
        self.previous_released.clear()
        if self.previous is None or self._previous_grace_s is None:
            return
        self._release = asyncio.get_running_loop().call_later(self._previous_grace_s, self._release_previous)

    def _release_previous(self) -> None:
        self._release = None
        if self.previous is not None and self.previous.predictor is not RELEASED:
            log.info("released model %s (the previous one) after %gs", self.previous.version, self._previous_grace_s)
            self.previous = replace(self.previous, predictor=RELEASED)
        self.previous_released.set()

    async def _first_loadable(self, candidates: Sequence[Path]) -> tuple[Path, Predictor, list[Fallback]]:
        """The first candidate that loads, its predictor, and why the ones before it did not."""
        failures: list[Fallback] = []
        for path in candidates:
            try:
                return path, await asyncio.to_thread(self._loader, path), failures
            except Exception as exc:  # noqa: BLE001 - whatever broke the files, this version cannot be served
                failure = Fallback(path.name, bounded_reason(f"{type(exc).__name__}: {exc}", 300))
                log.warning("model version %s did not load: %s", failure.wanted, failure.reason)
                failures.append(failure)
        raise ModelLoadFailed("; ".join(f"model version {f.wanted} did not load ({f.reason})" for f in failures))

    async def _notify(self) -> None:
        async with self._swapped:
            self._swapped.notify_all()

    async def wait_for_version(self, version: str) -> LoadedModel:
        """Return once ``version`` is the current model (bound it with a time-out)."""
        async with self._swapped:
            await self._swapped.wait_for(lambda: self.current is not None and self.current.version == version)
            assert self.current is not None
            return self.current
