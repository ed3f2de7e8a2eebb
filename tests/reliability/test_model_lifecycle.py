"""The model lifecycle across services, over the real RabbitMQ: the trainer service, NER API apps and one model store
folder, all real; only the models are the lexicon test models of :mod:`synthner_ner_api.testing` (the real model's
truncated weights are covered beside the trainer's and the API's own tests).

- A version whose weights file is truncated when written fails the trainer's load-back check: it is kept as
  ``failed``, never current, never announced. One that is announced but truncated on a replica's volume is retried
  and dead-lettered. Either way every replica keeps serving the version before, and ``/readyz`` stays 200.
- A rollback asked at one replica's ``/v1/admin/rollback`` reaches every replica (the trainer pins the version in the
  store and announces ``ModelRolledBack``), the next training does not undo it, and a restarted replica serves the
  rolled-back version from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from synthner_ner_api.app import create_app
from synthner_ner_api.events import ModelEvents
from synthner_ner_api.models import ModelRegistry as ServedModels
from synthner_ner_api.settings import NerApiSettings
from synthner_ner_api.testing import (
    ADMIN_KEY,
    PLACEHOLDER_MANIFEST,
    PLACEHOLDER_RESULT,
    load_lexicon_model,
    write_key_file,
)
from synthner_shared.contracts import (
    ModelPublished,
    TrainingRequested,
    decode_message,
)
from synthner_shared.messaging import NER_API, BrokerSettings
from synthner_shared.model_store import read_current
from synthner_shared.testing import BrokerProbe, publish_once, running_app
from synthner_trainer.app import TrainerApp
from synthner_trainer.pipeline import PRODUCER, TrainingOutcome
from synthner_trainer.registry import ModelRegistry, decide
from synthner_trainer.service import TrainerService
from synthner_trainer.settings import TrainerSettings
from synthner_trainer.store import DatasetStore

pytestmark = pytest.mark.rabbitmq

LEXICON_CONFIG = '{"id2label": {"0": "O", "1": "B-Disease", "2": "I-Disease"}}'


def loads_and_predicts(folder: Path) -> None:
    """The trainer's check before a version becomes current, with the loader the replicas use."""
    load_lexicon_model(folder).annotate(["Seen today for asthma."])


class LexiconTraining:
    """The trainer's training step with a lexicon model: writes, checks and registers a version as the real one does
    (``gate_and_register``), announcing it only when it is published and current. The request's correlation id says
    what goes wrong: ``truncated`` cuts the weights file as it is written; ``truncated-on-volume`` cuts it after the
    check (what a replica reading an incomplete copy sees)."""

    def __call__(
        self,
        request: TrainingRequested,
        store: DatasetStore,
        registry: ModelRegistry,
        settings: TrainerSettings,
        should_stop: Callable[[], bool],
    ) -> TrainingOutcome:
        name = f"m-{len(registry.list()) + 1}"
        weights = '{"label": "Disease", "words": ["asthma", "' + name + '"]}'

        def write(folder: Path) -> None:
            (folder / "config.json").write_text(LEXICON_CONFIG, encoding="utf-8")
            cut = request.correlation_id == "truncated"
            (folder / "lexicon.json").write_text(weights[: len(weights) // 2] if cut else weights, encoding="utf-8")

        version = registry.add(name, write, decide(None, None, 0.01), verify=loads_and_predicts)
        if request.correlation_id == "truncated-on-volume":
            (version.path / "lexicon.json").write_text(weights[:10], encoding="utf-8")
        published = None
        if version.status == "published" and version.held_by is None:
            published = ModelPublished(
                correlation_id=request.correlation_id,
                producer=PRODUCER,
                model_version=name,
                artifact_uri=str(version.path),
                labels=["Disease"],
                base_model="lexicon",
                metrics=[PLACEHOLDER_RESULT],
                dataset=PLACEHOLDER_MANIFEST,
            )
        return TrainingOutcome(version, [PLACEHOLDER_RESULT], published)


@dataclass
class Replica:
    name: str
    models: ServedModels
    events: ModelEvents
    http: httpx.AsyncClient

    async def serves(self, version: str) -> None:
        await asyncio.wait_for(self.models.wait_for_version(version), timeout=30)
        answer = await self.http.get("/readyz")
        assert (answer.status_code, answer.json()["model_version"]) == (200, version)


@asynccontextmanager
async def replica(name: str, store: Path, broker: BrokerSettings, keys: Path) -> AsyncIterator[Replica]:
    """A NER API replica as ``synthner_ner_api.app.build`` puts it together, over ASGI: its own model-event queue,
    rollback requests on the same connection. It is listening when the block starts."""
    settings = NerApiSettings(auth_mode="api_keys", api_keys_file=keys, model_store=store, instance=name)
    models = ServedModels(load_lexicon_model, store=store)
    events = ModelEvents(broker, name)
    app = create_app(settings, models, events.listen, request_rollback=events.request_rollback)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ner", headers={"X-API-Key": ADMIN_KEY}
        ) as http,
    ):
        await asyncio.wait_for(events.wait_listening(), timeout=30)
        yield Replica(name, models, events, http)


async def trainings_done(trainer: TrainerService, count: int) -> list[TrainingOutcome]:
    async with asyncio.timeout(30):
        while len(trainer.outcomes) < count:
            await trainer.finished.wait()
            trainer.finished.clear()
    return trainer.outcomes


async def train(broker: BrokerSettings, trainer: TrainerService, correlation_id: str) -> TrainingOutcome:
    done = len(trainer.outcomes)
    await publish_once(broker, TrainingRequested(correlation_id=correlation_id, producer="tests"))
    return (await trainings_done(trainer, done + 1))[done]


async def test_truncated_weights_are_never_served_and_a_rollback_reaches_every_replica_and_a_restarted_one(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    settings = TrainerSettings(data_dir=tmp_path / "trainer")
    store, keys = settings.models_dir, write_key_file(tmp_path / "keys")
    trainer = TrainerService(settings, broker_settings, LexiconTraining())
    names = ["replica-a", "replica-b"]
    try:
        async with AsyncExitStack() as running:
            await running.enter_async_context(running_app(TrainerApp(trainer, health_address=None)))
            a, b = [await running.enter_async_context(replica(n, store, broker_settings, keys)) for n in names]

            assert (await train(broker_settings, trainer, "first")).version.status == "published"
            await a.serves("m-1")
            await b.serves("m-1")

            # truncated as written: failed by the trainer's check, kept, never current, never announced
            failed = await train(broker_settings, trainer, "truncated")
            assert (failed.version.name, failed.version.status, failed.published) == ("m-2", "failed", None)
            assert failed.version.gate.reason.startswith("the written model did not load back: JSONDecodeError")
            assert read_current(trainer.registry.layout).version == "m-1"

            assert (await train(broker_settings, trainer, "second")).version.name == "m-3"
            await a.serves("m-3")
            await b.serves("m-3")

            # announced, but truncated on the replicas' volume: retried, dead-lettered; both keep serving m-3
            assert (await train(broker_settings, trainer, "truncated-on-volume")).published is not None
            dead = [await broker_probe.get(broker_probe.topology.dead_letter_queue_name(NER_API)) for _ in names]
            assert {decode_message(d.body).model_version for d in dead} == {"m-4"}  # type: ignore[attr-defined]
            await a.serves("m-3")
            await b.serves("m-3")

            # a rollback asked at one replica reaches both, older though m-1 is
            answer = await a.http.post("/v1/admin/rollback", json={"version": "m-1", "reason": "m-3 misses drugs"})
            assert answer.status_code == 200, answer.text
            assert (answer.json()["version"], answer.json()["served_here"]) == ("m-1", True)
            await b.serves("m-1")
            pin = read_current(trainer.registry.layout).pinned
            assert pin is not None
            assert (pin.version, pin.from_version, pin.by, pin.reason) == ("m-1", "m-4", "ops", "m-3 misses drugs")

            # the next training is kept but held by the pin: nothing is announced, nothing moves
            held = await train(broker_settings, trainer, "third")
            assert (held.version.name, held.version.status, held.published) == ("m-5", "published", None)
            assert held.version.held_by == pin

            # a replica restarted now reads the pin from the store
            await running.aclose()
        async with replica("replica-b", store, broker_settings, keys) as restarted:
            await restarted.serves("m-1")
            assert restarted.models.fallback is None
    finally:
        await broker_probe.topology.delete(await broker_probe.connection.channel(), instances={"ner-api": names})
