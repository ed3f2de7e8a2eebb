"""The previous model's weights are released after the grace period: one model's memory in steady state, and a
rollback after the grace period loads the previous version from disk again."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

from ner_api_support import load_lexicon_model, write_model

from synthner_ner_api.models import RELEASED, ModelRegistry, Predictor
from synthner_ner_api.settings import NerApiSettings


class CountingLoader:
    def __init__(self) -> None:
        self.loaded: list[str] = []

    def __call__(self, path: Path) -> Predictor:
        self.loaded.append(path.name)
        return load_lexicon_model(path)


async def test_the_previous_model_is_released_after_the_grace_period_and_reloaded_for_a_rollback(store: Path) -> None:
    write_model(store, "v2", "Condition", ["asthma"])
    loader = CountingLoader()
    registry = ModelRegistry(loader, store=store, previous_grace_s=0.0)
    await registry.load("v1")
    first = registry.current
    assert first is not None
    weights = weakref.ref(first.predictor)
    del first
    await registry.load("v2")
    await asyncio.wait_for(registry.previous_released.wait(), timeout=10)
    assert registry.previous is not None
    assert (registry.previous.version, registry.previous.predictor) == ("v1", RELEASED)
    gc.collect()
    assert weights() is None, "nothing holds the released model's predictor"
    await registry.load("v1")  # a rollback after the grace period: from disk
    assert loader.loaded == ["v1", "v2", "v1"]
    assert registry.current is not None
    assert registry.current.predictor.annotate(["Seen for asthma."])


async def test_within_the_grace_period_a_rollback_takes_the_loaded_previous_model(store: Path) -> None:
    write_model(store, "v2", "Condition", ["asthma"])
    loader = CountingLoader()
    registry = ModelRegistry(loader, store=store, previous_grace_s=3600.0)
    await registry.load("v1")
    await registry.load("v2")
    await registry.load("v1")
    assert loader.loaded == ["v1", "v2"]
    assert not registry.previous_released.is_set()


def test_the_grace_period_is_a_setting_of_five_minutes_by_default(store: Path) -> None:
    settings = NerApiSettings(auth_mode="trusted_proxy", model_store=store)
    assert settings.previous_model_grace_s == 300.0
