"""``synthner ops`` with the real trainer service on the real RabbitMQ and real stores: the cluster-wide rollback and
its release (the trainer is the model store's one writer), a training request followed to its status. Training itself
never runs here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from synthner.main import main
from synthner_shared.contracts import ModelPinReleaseRequested, ModelRolledBack, TrainingRequested, decode_message
from synthner_shared.messaging import BrokerSettings
from synthner_shared.testing import BrokerProbe, running_app
from synthner_trainer.app import TrainerApp
from synthner_trainer.pipeline import TrainingOutcome
from synthner_trainer.registry import ModelRegistry, decide
from synthner_trainer.service import TrainerService
from synthner_trainer.settings import TrainerSettings
from synthner_trainer.store import DatasetStore

pytestmark = pytest.mark.rabbitmq


def no_training(
    request: TrainingRequested,
    store: DatasetStore,
    registry: ModelRegistry,
    settings: TrainerSettings,
    should_stop: Callable[[], bool],
) -> TrainingOutcome:
    raise AssertionError("no training is requested in these tests")


def write_config(folder: Path) -> None:
    (folder / "config.json").write_text("{}")


def trainer_with_versions(tmp_path: Path, broker_settings: BrokerSettings) -> TrainerService:
    trainer = TrainerService(TrainerSettings(data_dir=tmp_path / "trainer"), broker_settings, no_training)
    add_versions(trainer)
    return trainer


def add_versions(trainer: TrainerService) -> None:
    trainer.start()
    write = write_config
    trainer.registry.add("m-1", write, decide(0.80, None, 0.01))
    trainer.registry.add("m-2", write, decide(0.81, 0.80, 0.01))
    trainer.registry.add("m-3", write, decide(0.10, 0.81, 0.01))  # rejected by the gate


async def test_rollback_is_done_by_the_trainer_announced_and_seen_in_the_store(
    tmp_path: Path, broker_env: BrokerSettings, broker_probe: BrokerProbe, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = trainer_with_versions(tmp_path, broker_env)
    store = str(trainer.registry.root)
    history = f"{broker_probe.topology.namespace}.model-history"
    rollback = ["ops", "models", "rollback", "m-1", "--store", store, "--by", "ops-test", "--reason", "m-2 misses"]
    async with running_app(TrainerApp(trainer, health_address=None)):
        assert await asyncio.to_thread(main, [*rollback, "--wait", "30"]) == 0
    assert "rolled back to m-1 (from m-2) by ops-test; every NER API replica follows" in capsys.readouterr().out
    event = decode_message((await broker_probe.get(history)).body)
    assert isinstance(event, ModelRolledBack)
    assert (event.model_version, event.requested_by, event.reason) == ("m-1", "ops-test", "m-2 misses")

    assert main(["ops", "models", "list", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "* m-1  published" in out
    assert "  m-2  published" in out
    assert "pinned by a rollback: version m-1, from_version m-2, by ops-test, reason m-2 misses" in out


async def test_release_asks_the_trainer_to_release_the_pin(
    tmp_path: Path, broker_env: BrokerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    released = asyncio.Event()

    class Trainer(TrainerService):
        async def release_pin(self, request: ModelPinReleaseRequested) -> None:
            await super().release_pin(request)
            released.set()

    trainer = Trainer(TrainerSettings(data_dir=tmp_path / "trainer"), broker_env, no_training)
    add_versions(trainer)
    trainer.registry.rollback("m-1", by="ops-test", reason="m-2 misses")
    store = str(trainer.registry.root)
    async with running_app(TrainerApp(trainer, health_address=None)):
        assert await asyncio.to_thread(main, ["ops", "models", "release", "--by", "ops-test"]) == 0
        await asyncio.wait_for(released.wait(), timeout=30)
    assert "requested the release of the rollback pin" in capsys.readouterr().out
    assert main(["ops", "models", "list", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "* m-1  published" in out
    assert "pinned" not in out


def test_rollback_to_a_version_the_store_does_not_serve_is_refused_before_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from synthner_shared.local_llm import free_port  # noqa: PLC0415 - only this test needs a closed port

    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/")  # never reached
    registry = ModelRegistry(tmp_path / "models")
    registry.add("m-1", write_config, decide(0.1, 0.8, 0.01))
    store = str(registry.root)
    assert main(["ops", "models", "rollback", "m-1", "--store", store, "--by", "ops"]) == 2
    assert "model version m-1 is rejected; only a published version can be served" in capsys.readouterr().err
    assert main(["ops", "models", "rollback", "m-9", "--store", store, "--by", "ops"]) == 2
    assert "no model version 'm-9'" in capsys.readouterr().err


async def test_a_requested_training_is_followed_to_its_status_in_the_trainers_store(
    tmp_path: Path, broker_env: BrokerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[TrainingRequested] = []

    def unknown_version(
        request: TrainingRequested,
        store: DatasetStore,
        registry: ModelRegistry,
        settings: TrainerSettings,
        should_stop: Callable[[], bool],
    ) -> TrainingOutcome:
        seen.append(request)
        raise KeyError(f"no dataset version {request.dataset.dataset_version}")

    trainer = TrainerService(TrainerSettings(data_dir=tmp_path / "trainer"), broker_env, unknown_version)
    async with running_app(TrainerApp(trainer, health_address=None)):
        assert await asyncio.to_thread(main, ["ops", "train", "--dataset-version", "ds-9", "--epochs", "3"]) == 0
        await asyncio.wait_for(trainer.finished.wait(), timeout=30)
    request_id = capsys.readouterr().out.split()[2]
    assert [(str(r.message_id), r.dataset.dataset_version, r.hyperparameters.epochs) for r in seen] == [
        (request_id, "ds-9", 3.0)
    ]
    store = str(trainer.settings.store_path)
    assert main(["ops", "trainings", request_id, "--store", store]) == 0
    assert capsys.readouterr().out == f"{request_id}: failed (KeyError: 'no dataset version ds-9')\n"
    assert main(["ops", "trainings", "no-such-request", "--store", store]) == 1
    assert "no-such-request: unknown" in capsys.readouterr().out
