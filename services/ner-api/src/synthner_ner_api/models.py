"""The served model and its hot swap: load a version in the background, then replace the current one atomically.

Every batch takes the current model once, so a request is answered wholly by one version (reported in the
response), and a swap never fails or mixes requests. The previous model stays loaded for an instant rollback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from synthner_shared.model_store import ModelStoreError, ModelStoreLayout, read_current, read_verdict
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


class ModelRegistry:
    """Knows the model store, holds the current and the previous model, and swaps them."""

    def __init__(self, loader: Loader, store: Path | None = None, fixed: Path | None = None) -> None:
        if store is None and fixed is None:
            raise ValueError("a model store or a fixed model folder is needed")
        self._loader = loader
        self._store = store
        self._layout = ModelStoreLayout(store) if store is not None else None
        self._fixed = fixed
        self._lock = asyncio.Lock()
        self._swapped = asyncio.Condition()
        self.current: LoadedModel | None = None
        self.previous: LoadedModel | None = None

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

    def _default_version(self, servable: list[str]) -> str:
        """The trainer's current pointer when it names a servable version, else the newest published one."""
        assert self._layout is not None
        try:
            pointed = read_current(self._layout).version
        except ModelStoreError as exc:
            log.warning("ignoring the current pointer: %s", exc)
            pointed = None
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

    async def load(self, version: str | None = None) -> LoadedModel:
        """Load a version (default: the newest) off the event loop, then make it current. Returns it."""
        async with self._lock:
            path = self._path_of(version)
            if self.current is not None and self.current.path == path:
                return self.current
            predictor = await asyncio.to_thread(self._loader, path)
            model = describe_model(path, predictor)
            self.previous, self.current = self.current, model
            log.info("serving model %s (previous %s)", model.version, self.previous.version if self.previous else None)
        await self._notify()
        return model

    async def rollback(self) -> LoadedModel:
        async with self._lock:
            if self.previous is None:
                raise ModelNotFound("no previous model version to roll back to")
            restored = self.previous
            self.previous, self.current = self.current, restored
            log.info("rolled back to model %s", restored.version)
        await self._notify()
        return restored

    async def _notify(self) -> None:
        async with self._swapped:
            self._swapped.notify_all()

    async def wait_for_version(self, version: str) -> LoadedModel:
        """Return once ``version`` is the current model (bound it with a time-out)."""
        async with self._swapped:
            await self._swapped.wait_for(lambda: self.current is not None and self.current.version == version)
            assert self.current is not None
            return self.current
