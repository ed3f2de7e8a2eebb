"""The trainer service against the real RabbitMQ: stores, de-duplicates, acks after the write, survives a restart,
trains one request at a time in a worker thread and publishes ``ModelPublished`` only for a version the gate passed;
adaptation requests share the job queue and end in ``GeneratorAdapted`` (or a failed status).

Training itself is replaced by a fake (the real one is covered by the unit tier); everything else is real.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aio_pika.abc import HeadersType
from prometheus_client import generate_latest

from synthner_shared.contracts import (
    AdaptationRequested,
    DocumentAnnotated,
    Envelope,
    EvaluationResult,
    GeneratorAdapted,
    ModelPinReleaseRequested,
    ModelPublished,
    ModelRollbackRequested,
    ModelRolledBack,
    Scores,
    TrainingRequested,
    decode_message,
)
from synthner_shared.local_llm import free_port
from synthner_shared.messaging import REASON_HEADER, TRAINER, BrokerSettings, BrokerUnavailable
from synthner_shared.observability.metrics import service_registry
from synthner_shared.testing import BrokerProbe, publish_once, running_app, sample_annotated
from synthner_trainer.app import TrainerApp, build
from synthner_trainer.pipeline import PRODUCER, TrainingOutcome
from synthner_trainer.registry import ModelRegistry, decide
from synthner_trainer.service import TrainerService
from synthner_trainer.settings import TrainerSettings
from synthner_trainer.store import DatasetStore
from synthner_trainer.testing import adapted_event
from synthner_trainer.training import TrainingCancelled

pytestmark = pytest.mark.rabbitmq

SCORES = Scores(precision=0.5, recall=0.5, f1=0.5, support=2)
RESULT = EvaluationResult(
    dataset="gold",
    documents=1,
    strict_micro=SCORES,
    strict_macro=SCORES,
    partial_micro=SCORES,
    strict_per_label={"Disease": SCORES},
    partial_per_label={"Disease": SCORES},
)


class FakeTraining:
    """Stands in for ``run_training_request``: freezes a dataset version, registers a version with a given gold F1."""

    def __init__(self, gold_f1: list[float], release: threading.Event | None = None) -> None:
        self.gold_f1 = gold_f1
        self.release = release
        self.requests: list[TrainingRequested] = []
        self.started = threading.Event()

    def __call__(
        self,
        request: TrainingRequested,
        store: DatasetStore,
        registry: ModelRegistry,
        settings: TrainerSettings,
        should_stop: Callable[[], bool],
    ) -> TrainingOutcome:
        self.requests.append(request)
        self.started.set()
        if self.release is not None:
            while not self.release.wait(0.05):  # a training step: wakes on release or on shutdown
                if should_stop():
                    raise TrainingCancelled("stopped")
        manifest = store.create_version(request.dataset)
        current = registry.current()
        current_f1 = float(current.gate.candidate or 0) if current else None
        gate = decide(self.gold_f1.pop(0), current_f1, settings.gate_tolerance, current_version=None)
        name = f"m-{len(registry.list()) + 1}"

        def write(folder: Path) -> None:
            (folder / "config.json").write_text("{}")

        version = registry.add(name, write, gate)
        published = None
        if gate.verdict == "published":
            published = ModelPublished(
                correlation_id=request.correlation_id,
                producer=PRODUCER,
                model_version=name,
                artifact_uri=str(version.path),
                labels=["Disease"],
                base_model="fake",
                metrics=[RESULT],
                dataset=manifest,
            )
        return TrainingOutcome(version, [RESULT], published)


class Recorder:
    """Wraps the service's document handler: an event per handled document, and optional injected failures."""

    def __init__(self, trainer: TrainerService, fail_first: int = 0) -> None:
        self.handled: asyncio.Queue[str] = asyncio.Queue()
        self.failures_left = fail_first
        original = trainer.store_document

        async def recording(message: DocumentAnnotated) -> None:
            if self.failures_left:
                self.failures_left -= 1
                raise OSError("disk unavailable")  # before the write: the message must come back
            await original(message)
            await self.handled.put(message.note_id)

        trainer.store_document = recording  # type: ignore[method-assign]

    async def next(self, timeout_s: float = 20.0) -> str:
        return await asyncio.wait_for(self.handled.get(), timeout_s)


@asynccontextmanager
async def trainer_running(trainer: TrainerService) -> AsyncIterator[TrainerService]:
    """Run a TrainerService (consumer and training worker) for the block as its composition root runs it (the
    signals are the runner's, so none are handled here), then close it."""
    async with running_app(TrainerApp(trainer, health_address=None)):
        yield trainer


async def test_the_composition_root_builds_a_started_trainer_that_answers_probes(
    tmp_path: Path, broker_settings: BrokerSettings
) -> None:
    port = free_port()
    app = await build(settings_for(tmp_path, health_port=port), broker_settings, FakeTraining([]))
    assert app.trainer.store.count() == 0  # started by the root: the store is open before anything runs
    async with running_app(app), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as probe:
        assert (await probe.get("/livez")).status_code == 200
        ready = await probe.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["consuming"] is True
        metrics = await probe.get("/metrics")  # on the probe port: the consumer's counters and the process
        assert metrics.status_code == 200
        assert f'synthner_messages_received_total{{queue="{broker_settings.namespace}.trainer"}} 0.0' in metrics.text
        assert "process_resident_memory_bytes" in metrics.text
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as probe:
        with pytest.raises(httpx.ConnectError):  # the probe server stops with the service
            await probe.get("/livez")


def consumer_metrics() -> str:
    """The process-wide part of what the trainer's /metrics serves (its training progress among it)."""
    return generate_latest(service_registry()).decode()


def settings_for(tmp_path: Path, **changes: object) -> TrainerSettings:
    return TrainerSettings(data_dir=tmp_path / "trainer", **changes)  # type: ignore[arg-type]


def docs(*seeds: int) -> list[DocumentAnnotated]:
    return [sample_annotated(seed=s, target_chars=300, spans=3) for s in seeds]


async def test_documents_are_stored_once_and_survive_a_restart(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    first, second, third = docs(1, 2, 3)
    trainer = TrainerService(settings_for(tmp_path), broker_settings, FakeTraining([]))
    recorder = Recorder(trainer)
    async with trainer_running(trainer):
        await publish_once(broker_settings, first, second)
        assert {await recorder.next(), await recorder.next()} == {first.note_id, second.note_id}
    # a new service object on the same data directory: what was stored is still there, a re-sent copy is not added
    restarted = TrainerService(settings_for(tmp_path), broker_settings, FakeTraining([]))
    recorder = Recorder(restarted)
    async with trainer_running(restarted):
        assert restarted.store.count() == 2
        await publish_once(broker_settings, first.model_copy(update={"message_id": third.message_id}), third)
        assert {await recorder.next(), await recorder.next()} == {first.note_id, third.note_id}
        assert restarted.store.count() == 3
    assert await broker_probe.drain(broker_probe.topology.queue_name(TRAINER)) == []


async def test_a_document_is_acked_only_after_it_is_written(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    (document,) = docs(5)
    trainer = TrainerService(settings_for(tmp_path), broker_settings, FakeTraining([]))
    recorder = Recorder(trainer, fail_first=1)
    async with trainer_running(trainer):
        await publish_once(broker_settings, document)
        assert await recorder.next() == document.note_id  # stored on the retry, not lost on the failure
        assert trainer.store.count() == 1
        assert trainer.service.runners[0].stats.retried == 1


async def test_every_n_documents_trigger_one_training_that_publishes_a_passing_model(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    release = threading.Event()
    training = FakeTraining([0.8], release)
    trainer = TrainerService(settings_for(tmp_path, train_every=2), broker_settings, training)
    recorder = Recorder(trainer)
    async with trainer_running(trainer):
        await publish_once(broker_settings, *docs(1, 2))
        await recorder.next()
        await recorder.next()
        assert await asyncio.to_thread(training.started.wait, 20)
        # /metrics shows the job while it runs
        assert re.search(r'synthner_training_running\{job="[^"]+",kind="training"\} 1.0', consumer_metrics())
        # while the training runs in its thread, the consumer keeps storing documents
        await publish_once(broker_settings, *docs(3))
        await recorder.next()
        assert trainer.store.count() == 3
        release.set()
        message = await broker_probe.get(f"{broker_probe.topology.namespace}.model-history")
        assert "synthner_training_running{" not in consumer_metrics()
    published = decode_message(message.body)
    assert isinstance(published, ModelPublished)
    assert published.model_version == "m-1"
    assert published.dataset.document_count >= 2
    assert len(training.requests) == 1


async def test_a_rejected_model_is_kept_but_not_published(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    training = FakeTraining([0.8, 0.5])
    trainer = TrainerService(settings_for(tmp_path), broker_settings, training)
    recorder = Recorder(trainer)
    history = f"{broker_probe.topology.namespace}.model-history"
    async with trainer_running(trainer):
        await publish_once(broker_settings, *docs(1))
        await recorder.next()
        await publish_once(broker_settings, TrainingRequested(correlation_id="job-a", producer="tests"))
        first = decode_message((await broker_probe.get(history)).body)
        await publish_once(broker_settings, TrainingRequested(correlation_id="job-b", producer="tests"))
        await wait_for(lambda: len(trainer.outcomes) == 2, trainer)
    assert isinstance(first, ModelPublished)
    assert [v.status for v in trainer.registry.list()] == ["published", "rejected"]
    assert trainer.registry.current() is not None
    assert trainer.registry.current().name == "m-1"  # type: ignore[union-attr]
    assert await broker_probe.drain(history) == []


async def test_a_rollback_request_pins_the_version_and_is_announced_and_an_unpublished_one_is_dead_lettered(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    trainer = TrainerService(settings_for(tmp_path), broker_settings, FakeTraining([]))
    trainer.start()

    def write(folder: Path) -> None:
        (folder / "config.json").write_text("{}")

    for name, gold_f1 in (("m-1", 0.8), ("m-2", 0.81), ("m-3", 0.1)):
        trainer.registry.add(name, write, decide(gold_f1, 0.8, 0.01))
    history = f"{broker_probe.topology.namespace}.model-history"

    def request(version: str) -> ModelRollbackRequested:
        return ModelRollbackRequested(
            correlation_id="rollback-1", producer="tests", model_version=version, requested_by="ops", reason="bad m-2"
        )

    async with trainer_running(trainer):
        await publish_once(broker_settings, request("m-1"))
        event = decode_message((await broker_probe.get(history)).body)
        await publish_once(broker_settings, request("m-3"))  # rejected by the gate: never served
        dead = await broker_probe.get(broker_probe.topology.dead_letter_queue_name(TRAINER))
    assert isinstance(event, ModelRolledBack)
    assert (event.model_version, event.from_version, event.requested_by) == ("m-1", "m-2", "ops")
    assert event.reason == "bad m-2"
    pin = trainer.registry.pinned()
    assert pin is not None
    assert (pin.version, pin.at) == ("m-1", event.rolled_back_at)
    assert trainer.registry.current().name == "m-1"  # type: ignore[union-attr]
    assert "model version m-3 is rejected" in str((dead.headers or {})[REASON_HEADER])
    assert await broker_probe.drain(history) == []
    release = ModelPinReleaseRequested(correlation_id="release-1", producer="tests", requested_by="ops")
    assert await trainer.handle(release) == []
    assert trainer.registry.pinned() is None
    assert trainer.registry.current().name == "m-1"  # type: ignore[union-attr]


async def test_a_model_event_the_broker_does_not_confirm_is_retried_and_later_jobs_still_run(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    # Found by the chaos run's reasoning: a broker restart as a training ends made the publish raise, which ended the
    # worker task, so the event was never sent and no later request ever ran while the service still looked ready.
    training = FakeTraining([0.8, 0.9])
    trainer = TrainerService(settings_for(tmp_path), broker_settings, training)
    recorder = Recorder(trainer)
    history = f"{broker_probe.topology.namespace}.model-history"
    async with trainer_running(trainer):
        publisher = trainer.service.broker.publisher
        original = publisher.publish
        refusals = [BrokerUnavailable("no publisher confirm within 10s for 'model.published'")]

        async def unconfirmed_once(message: Envelope, headers: HeadersType | None = None) -> None:
            if isinstance(message, ModelPublished) and refusals:
                raise refusals.pop()
            await original(message, headers)

        publisher.publish = unconfirmed_once  # type: ignore[method-assign]
        await publish_once(broker_settings, *docs(1))
        await recorder.next()
        await publish_once(broker_settings, TrainingRequested(correlation_id="job-a", producer="tests"))
        first = decode_message((await broker_probe.get(history)).body)
        await publish_once(broker_settings, TrainingRequested(correlation_id="job-b", producer="tests"))
        second = decode_message((await broker_probe.get(history)).body)
    assert refusals == []
    assert isinstance(first, ModelPublished)
    assert isinstance(second, ModelPublished)
    assert [first.model_version, second.model_version] == ["m-1", "m-2"]


async def test_a_request_acked_before_a_crash_runs_after_the_restart(
    tmp_path: Path, broker_settings: BrokerSettings
) -> None:
    settings = settings_for(tmp_path)
    store = DatasetStore(settings.store_path)
    store.add(docs(1)[0])
    request = TrainingRequested(correlation_id="job-crash", producer="tests")
    store.enqueue_request(request)
    store.set_request_status(request, "running")  # the process died during this training
    store.close()
    training = FakeTraining([0.7])
    trainer = TrainerService(settings, broker_settings, training)
    async with trainer_running(trainer):
        await wait_for(lambda: len(trainer.outcomes) == 1, trainer)
    assert [r.message_id for r in training.requests] == [request.message_id]


async def test_shutdown_cancels_a_running_training_which_runs_again_after_the_restart(
    tmp_path: Path, broker_settings: BrokerSettings
) -> None:
    blocked = FakeTraining([0.9], threading.Event())  # never released: only shutdown ends it
    trainer = TrainerService(settings_for(tmp_path), broker_settings, blocked)
    async with trainer_running(trainer):
        await publish_once(broker_settings, *docs(1))
        await publish_once(broker_settings, TrainingRequested(correlation_id="job-stop", producer="tests"))
        assert await asyncio.to_thread(blocked.started.wait, 20)
    assert trainer.outcomes == []
    again = FakeTraining([0.9])
    restarted = TrainerService(settings_for(tmp_path), broker_settings, again)
    async with trainer_running(restarted):
        await wait_for(lambda: len(restarted.outcomes) == 1, restarted)
    assert [r.correlation_id for r in again.requests] == ["job-stop"]


async def wait_for(condition: Callable[[], bool], trainer: TrainerService, timeout_s: float = 30.0) -> None:
    """Wait until ``condition`` holds, re-checking whenever a training finishes."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await trainer.finished.wait()
            trainer.finished.clear()


def status_of(trainer: TrainerService, request: AdaptationRequested) -> tuple[str, str | None]:
    return trainer.store.request_status(str(request.message_id)) or ("unknown", None)


class FakeAdaptation:
    """Stands in for ``run_adaptation_request``: returns the event a finished adaptation would."""

    def __init__(self) -> None:
        self.requests: list[AdaptationRequested] = []

    def __call__(
        self, request: AdaptationRequested, settings: TrainerSettings, should_stop: Callable[[], bool]
    ) -> GeneratorAdapted:
        self.requests.append(request)
        out = settings.generators_dir / (request.name or "adapted")
        return adapted_event(request, out, PRODUCER)


async def test_an_adaptation_request_runs_in_the_job_queue_and_announces_the_adapted_generator(
    tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    adaptation = FakeAdaptation()
    trainer = TrainerService(settings_for(tmp_path), broker_settings, FakeTraining([]), adaptation)
    request = AdaptationRequested(correlation_id="adapt-1", producer="tests", notes="real.jsonl", name="gen-1")
    async with trainer_running(trainer):
        await publish_once(broker_settings, request)
        message = await broker_probe.get(f"{broker_probe.topology.namespace}.model-history")
        await wait_for(lambda: status_of(trainer, request)[0] == "done", trainer)
        status = status_of(trainer, request)
    event = decode_message(message.body)
    assert isinstance(event, GeneratorAdapted)
    assert event.correlation_id == "adapt-1"
    assert event.artifact_uri.endswith("gen-1")
    assert [r.message_id for r in adaptation.requests] == [request.message_id]
    assert status == ("done", event.artifact_uri)


async def test_an_adaptation_naming_a_file_outside_the_notes_folder_fails_without_training(
    tmp_path: Path, broker_settings: BrokerSettings
) -> None:
    (tmp_path / "secret.jsonl").write_text('{"id": "a", "text": "x"}\n')
    trainer = TrainerService(settings_for(tmp_path), broker_settings, FakeTraining([]))  # the real adaptation
    request = AdaptationRequested(correlation_id="adapt-2", producer="tests", notes="../../secret.jsonl")
    async with trainer_running(trainer):
        await publish_once(broker_settings, request)
        await wait_for(lambda: status_of(trainer, request)[0] == "failed", trainer)
        status = status_of(trainer, request)
    assert "outside the trainer's notes folder" in (status[1] or "")
    assert trainer.adaptations == []
