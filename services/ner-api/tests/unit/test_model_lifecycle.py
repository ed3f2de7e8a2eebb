"""A version whose files do not load never replaces the served model; a replica with nothing to serve falls back to
the newest version that loads and says so; a replica moves back to an older version only when a rollback says so
(its event, or the store's pin), never on a late event, a reload without a version or a fallback."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from ner_api_support import load_lexicon_model, write_model

from synthner_ner_api.app import create_app
from synthner_ner_api.events import model_event_consumer
from synthner_ner_api.models import ModelLoadFailed, ModelRegistry
from synthner_ner_api.settings import NerApiSettings
from synthner_ner_api.testing import ADMIN_KEY, model_published
from synthner_shared.contracts import ModelPinReleaseRequested, ModelRollbackRequested, ModelRolledBack
from synthner_shared.messaging import BrokerUnavailable, RetryableError
from synthner_shared.model_store import (
    CurrentPointer,
    ModelStoreLayout,
    advance_current,
    release_pin,
    roll_back,
    write_current,
)

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


def rolled_back(store: Path, version: str, at: datetime | None = None) -> ModelRolledBack:
    """The trainer's announcement of a rollback it wrote into ``store`` (``at``: the pin's time)."""
    pin = CurrentPointer.model_validate_json(ModelStoreLayout(store).current_file.read_text()).pinned
    assert pin is not None
    return ModelRolledBack(
        correlation_id="rollback-1",
        producer="trainer-test",
        model_version=version,
        from_version=pin.from_version,
        artifact_uri=str(store / "versions" / version),
        requested_by="ops",
        rolled_back_at=at or pin.at,
    )


async def test_a_rollback_event_moves_a_replica_back_and_a_later_publish_waits_for_the_pin_to_go(store: Path) -> None:
    layout = ModelStoreLayout(store)
    write_model(store, "v2", "Condition", ["asthma"])
    registry = ModelRegistry(load_lexicon_model, store=store)
    assert (await registry.load()).version == "v2"
    handle = model_event_consumer(registry, "replica-a").handler
    roll_back(layout, "v1", by="ops", reason="v2 misses diseases")
    assert await handle(rolled_back(store, "v1")) == []
    assert (registry.current_version, registry.previous.version if registry.previous else None) == ("v1", "v2")
    write_model(store, "v3", "Condition", ["asthma"])
    await handle(model_published("v3", store))  # announced before the rollback, delivered after: the pin holds
    assert registry.current_version == "v1"
    release_pin(layout)
    await handle(model_published("v3", store))
    assert registry.current_version == "v3"


async def test_a_rollback_event_that_a_later_rollback_replaced_is_ignored(store: Path) -> None:
    layout = ModelStoreLayout(store)
    write_model(store, "v2", "Condition", ["asthma"])
    write_model(store, "v3", "Condition", ["asthma"])
    registry = ModelRegistry(load_lexicon_model, store=store)
    assert (await registry.load()).version == "v3"
    handle = model_event_consumer(registry, "replica-a").handler
    first = datetime.now(UTC)
    roll_back(layout, "v1", by="ops", at=first)
    roll_back(layout, "v2", by="ops", at=first + timedelta(minutes=1))
    await handle(rolled_back(store, "v1", at=first))  # redelivered late: the store was rolled back to v2 since
    assert registry.current_version == "v3"
    await handle(rolled_back(store, "v2"))
    assert registry.current_version == "v2"


async def test_a_rollback_event_after_the_pin_was_released_and_a_newer_version_published_is_ignored(
    store: Path,
) -> None:
    layout = ModelStoreLayout(store)
    write_model(store, "v2", "Condition", ["asthma"])
    registry = ModelRegistry(load_lexicon_model, store=store)
    advance_current(layout, "v1")
    advance_current(layout, "v2")
    roll_back(layout, "v1", by="ops")
    stale = rolled_back(store, "v1")
    lagging = ModelRolledBack.model_validate(stale.model_dump() | {"message_id": uuid.uuid4()})
    release_pin(layout)
    write_model(store, "v3", "Condition", ["asthma"])
    advance_current(layout, "v3")
    assert (await registry.load()).version == "v3"
    handle = model_event_consumer(registry, "replica-a").handler
    await handle(stale)  # redelivered after the release and v3: the store has moved on
    assert registry.current_version == "v3"
    write_current(layout, CurrentPointer(version="v2", history=["v1", "v2"]))  # a volume still showing the state before
    await handle(lagging)
    assert registry.current_version == "v1"


async def test_a_reload_without_a_version_never_moves_back_unless_the_store_is_rolled_back(store: Path) -> None:
    layout = ModelStoreLayout(store)
    write_model(store, "v2", "Condition", ["asthma"])
    registry = ModelRegistry(load_lexicon_model, store=store)
    assert (await registry.load("v2")).version == "v2"
    write_current(layout, CurrentPointer(version="v1", history=["v1"]))  # a pointer behind what is served
    assert (await registry.load()).version == "v2"
    roll_back(layout, "v1", by="ops")
    assert (await registry.load()).version == "v1"


async def test_a_replica_starting_on_a_rolled_back_store_serves_the_pin_and_falls_back_only_below_it(
    store: Path,
) -> None:
    layout = ModelStoreLayout(store)
    write_model(store, "v2", "Condition", ["asthma"])
    write_model(store, "v3", "Condition", ["asthma"])
    roll_back(layout, "v2", by="ops")
    assert (await ModelRegistry(load_lexicon_model, store=store).load()).version == "v2"
    break_files(store / "versions" / "v2")
    registry = ModelRegistry(load_lexicon_model, store=store)
    assert (await registry.load()).version == "v1"  # not v3, the version the cluster was rolled back from
    assert registry.fallback is not None
    assert registry.fallback.wanted == "v2"


class RollbackBus:
    """Stands in for the broker and the trainer: each request is written into the store and its event handled."""

    def __init__(self, store: Path, registry: ModelRegistry) -> None:
        self.store, self.registry = store, registry
        self.requests: list[ModelRollbackRequested | ModelPinReleaseRequested] = []
        self.down = False

    async def __call__(self, request: ModelRollbackRequested | ModelPinReleaseRequested) -> None:
        if self.down:
            raise BrokerUnavailable("no broker connection")
        self.requests.append(request)
        if isinstance(request, ModelPinReleaseRequested):
            release_pin(ModelStoreLayout(self.store))
            return
        pointer = roll_back(ModelStoreLayout(self.store), request.model_version, by=request.requested_by)
        handle = model_event_consumer(self.registry, "replica-a").handler
        await handle(rolled_back(self.store, request.model_version, pointer.pinned.at))  # type: ignore[union-attr]


async def test_the_rollback_endpoint_asks_for_a_cluster_wide_rollback_and_answers_once_served(
    settings: NerApiSettings, store: Path
) -> None:
    registry = ModelRegistry(load_lexicon_model, store=store)
    bus = RollbackBus(store, registry)
    app = create_app(settings, registry, request_rollback=bus)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ner", headers=ADMIN) as client,
    ):
        await registry.load()
        write_model(store, "v2", "Condition", ["asthma"])
        assert (await registry.load()).version == "v2"
        answer = await client.post("/v1/admin/rollback", json={"reason": "v2 misses diseases"})
        assert answer.status_code == 200, answer.text
        assert answer.json() | {"request_id": ""} == {
            "version": "v1",
            "requested_by": "ops",
            "request_id": "",
            "served_here": True,
        }
        (request,) = bus.requests
        assert isinstance(request, ModelRollbackRequested)
        assert (request.model_version, request.requested_by, request.reason) == ("v1", "ops", "v2 misses diseases")
        assert str(request.message_id) == answer.json()["request_id"]
        info = (await client.get("/v1/model")).json()
        assert (info["version"], info["rollback_pin"]["version"], info["rollback_pin"]["by"]) == ("v1", "v1", "ops")
        assert (await client.post("/v1/admin/rollback", json={"version": "v9"})).status_code == 404
        released = await client.post("/v1/admin/rollback/release", json={"reason": "v3 fixes it"})
        assert (released.status_code, released.json()["requested_by"]) == (202, "ops")
        assert isinstance(bus.requests[-1], ModelPinReleaseRequested)
        assert bus.requests[-1].reason == "v3 fixes it"
        assert (await client.get("/v1/model")).json()["rollback_pin"] is None
        bus.down = True
        refused = await client.post("/v1/admin/rollback", json={"version": "v2"})
        assert refused.status_code == 503
        assert refused.json()["error"].startswith("the rollback request was not sent")


async def test_a_replica_without_a_broker_refuses_a_rollback_it_cannot_spread(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/admin/rollback", json={"version": "v1"}, headers=ADMIN)
    assert answer.status_code == 409
    assert "needs the broker" in answer.json()["error"]
    nothing_before = await client.post("/v1/admin/rollback", headers=ADMIN)
    assert nothing_before.status_code == 409
    assert "no previous model version" in nothing_before.json()["error"]
    assert (await client.post("/v1/admin/rollback/release", headers=ADMIN)).status_code == 409
