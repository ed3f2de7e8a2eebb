"""A version whose files do not load never replaces the served model; a replica with nothing to serve falls back to
the newest version that loads and says so; model events never move a replica back to an older version."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from ner_api_support import load_lexicon_model, write_model

from synthner_ner_api.events import model_event_consumer
from synthner_ner_api.models import ModelLoadFailed, ModelRegistry
from synthner_ner_api.testing import ADMIN_KEY, model_published
from synthner_shared.messaging import RetryableError

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def break_files(folder: Path) -> None:
    """What a truncated copy looks like to the loader: a model file cut off mid-way."""
    (folder / "lexicon.json").write_text('{"label": "Condition", "wor', encoding="utf-8")


async def test_at_start_up_the_newest_version_that_loads_is_served_and_readyz_says_why(store: Path) -> None:
    break_files(write_model(store, "v2", "Condition", ["asthma"]))
    registry = ModelRegistry(load_lexicon_model, store=store)
    model = await registry.load()
    assert model.version == "v1"
    assert registry.fallback is not None
    assert registry.fallback.wanted == "v2"
    assert registry.fallback.reason.startswith("JSONDecodeError: ")


async def test_readyz_and_metrics_report_the_fallback(client: httpx.AsyncClient, store: Path) -> None:
    break_files(write_model(store, "v0", "Condition", ["asthma"]))
    registry: ModelRegistry = client.app_registry  # type: ignore[attr-defined]
    registry.current = None  # a replica starting up: the store's newest loadable version, v1, is served
    (store / "current.json").write_text('{"version": "v0", "history": ["v0"]}', encoding="utf-8")
    await registry.load()
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == "v1"
    assert ready.json()["fallback"]["wanted"] == "v0"
    metrics = (await client.get("/metrics")).text
    assert 'synthner_ner_model_fallback{wanted="v0"} 1.0' in metrics
    assert 'synthner_ner_model_info{version="v1"} 1.0' in metrics


async def test_a_named_version_that_does_not_load_leaves_the_served_one(client: httpx.AsyncClient, store: Path) -> None:
    break_files(write_model(store, "v2", "Condition", ["asthma"]))
    answer = await client.post("/v1/admin/reload", json={"version": "v2"}, headers=ADMIN)
    assert answer.status_code == 409
    assert "model version v2 did not load" in answer.json()["error"]
    assert (await client.get("/v1/model")).json()["version"] == "v1"
    assert "fallback" not in (await client.get("/readyz")).json()


async def test_nothing_loadable_is_a_clear_error(store: Path) -> None:
    break_files(store / "versions" / "v1")
    with pytest.raises(ModelLoadFailed, match="model version v1 did not load"):
        await ModelRegistry(load_lexicon_model, store=store).load()


async def test_a_model_event_for_a_version_that_does_not_load_is_retried_and_the_served_one_stays(store: Path) -> None:
    registry = ModelRegistry(load_lexicon_model, store=store)
    await registry.load()
    break_files(write_model(store, "v2", "Condition", ["asthma"]))
    handle = model_event_consumer(registry, "replica-a").handler
    with pytest.raises(RetryableError, match="model version v2 did not load"):
        await handle(model_published("v2", store))
    assert registry.current_version == "v1"


async def test_a_late_model_event_never_moves_a_replica_back(store: Path) -> None:
    registry = ModelRegistry(load_lexicon_model, store=store)
    write_model(store, "v2", "Condition", ["asthma"])
    assert (await registry.load()).version == "v2"
    handle = model_event_consumer(registry, "replica-a").handler
    assert await handle(model_published("v1", store)) == []  # a redelivered event of the version before
    assert registry.current_version == "v2"
    assert (await registry.load("v1")).version == "v1"  # an operator naming it still moves the replica
