"""The three ways the demo runs its stages (:mod:`synthner.local_pipeline`), each stage built by its service's
composition root (``synthner_<svc>.app.build``): their consumers' handlers chained in this process, each run as its
root built it over RabbitMQ in this process, or each a separate OS process (its ``python -m`` entry point, which runs
the same root) over RabbitMQ. Each returns the messages the run produced and the training's outcome."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from synthner.demo.options import DemoError, DemoOptions, StageFailed
from synthner.demo.progress import CurrentStage, ProgressView, StageBars, TrainingCurve
from synthner.demo.stages import Stages, student_seconds
from synthner.local_pipeline import Observer, PipelineRun, Transport
from synthner_shared.contracts import (
    AnnotationFailed,
    DocumentAnnotated,
    Envelope,
    EvaluationResult,
    HyperParameters,
    ModelPublished,
    TrainingRequested,
)
from synthner_shared.messaging import BrokerSettings

if TYPE_CHECKING:
    from synthner.demo.probe import Sample
    from synthner.supervisor import ProcessSpec
    from synthner_shared.local_llm import LocalLLM
    from synthner_trainer.service import TrainerService
    from synthner_trainer.settings import TrainerSettings
    from synthner_trainer.store import DatasetStore

log = logging.getLogger(__name__)

PRODUCER = "synthner-demo"
NER_API_INSTANCE = "demo"


@dataclass
class TrainingReport:
    published: ModelPublished | None
    version: str
    version_path: Path
    metrics: list[EvaluationResult]
    history: list[dict[str, float]]
    """The learning curve (epoch, loss, dev strict F1): recorded where the trainer runs in the demo's process."""


async def choose_transport(options: DemoOptions) -> tuple[Transport, BrokerSettings | None]:
    """The broker when asked for or reachable, else in process; the broker settings carry a fresh namespace (None:
    in process)."""
    from synthner.local_pipeline import broker_reachable, new_namespace

    if options.transport == "in-process":
        return "in-process", None
    broker = BrokerSettings(namespace=new_namespace())
    if await broker_reachable(broker):
        return ("processes" if options.transport == "processes" else "broker"), broker
    if options.transport in ("broker", "processes"):
        raise DemoError(
            f"RabbitMQ at {broker.redacted_url} is not reachable: start it (scripts/ensure-rabbitmq.sh), set AMQP_URL, "
            "or run with --in-process"
        )
    print(f"RabbitMQ at {broker.redacted_url} not reachable: running the stages in one process", flush=True)
    return "in-process", None


# --- in process -------------------------------------------------------------------------------------------------------


async def run_in_process(stages: Stages, llm: LocalLLM, progress: ProgressView) -> tuple[PipelineRun, TrainingReport]:
    """Each stage built by its composition root, its consumers' handlers chained in memory: generator -> annotator ->
    trainer's store; then one training request, run by the trainer with its progress drawn as a bar."""
    from synthner.local_pipeline import Routes, run_in_memory
    from synthner_annotator import app as annotator_app
    from synthner_generator import app as generator_app
    from synthner_shared.messaging import PoisonMessageError
    from synthner_trainer import app as trainer_app

    # No broker carries these messages: the services' connections are never opened, so their settings are the
    # defaults, not read from the environment.
    unused = BrokerSettings.model_construct()
    curve = TrainingCurve(progress)
    async with AsyncExitStack() as resources:
        trainer = await trainer_app.build(stages.trainer, unused, progress=curve)
        resources.push_async_callback(trainer.aclose)
        annotator = await annotator_app.build(stages.annotator, unused)
        resources.push_async_callback(annotator.aclose)

        async def keep(document: DocumentAnnotated) -> list[Envelope]:
            """The trainer's handler, with its label check (over the broker, the trainer dead-letters such a
            document; here it is left out of the dataset)."""
            try:
                await trainer.trainer.store_document(document)
            except PoisonMessageError as exc:
                log.warning("document %s not stored: %s", document.note_id[:12], exc)
            return []

        async with AsyncExitStack() as generating:
            generator = await generator_app.build(stages.generator, unused)
            generating.push_async_callback(generator.aclose)
            print(f"generating {stages.request.count} notes with {llm.model} (llama.cpp) ...", flush=True)
            bars = StageBars(stages.request.count, progress)
            routes = Routes().serve(generator.service).serve(annotator.service).add(DocumentAnnotated, keep)
            try:
                run = await run_in_memory(stages.request, routes, bars.see)
            finally:
                bars.close()
        request = training_request(stages, stages.request.job_id)
        report = await asyncio.to_thread(train, trainer.trainer, request, curve)
        run.messages.append(request)
        if report.published is not None:
            run.messages.append(report.published)
        return run, report


def training_request(stages: Stages, job_id: str) -> TrainingRequested:
    """The run's one training request, bounded by what is left of its time target (:func:`student_seconds`)."""
    bound = HyperParameters(max_seconds=student_seconds(stages, time.perf_counter()))
    return TrainingRequested(correlation_id=job_id, producer=PRODUCER, hyperparameters=bound)


def announce_training(settings: TrainerSettings, store: DatasetStore, request: TrainingRequested) -> None:
    """The console line before training: its epochs, its time bound and the notes it trains on."""
    stored, least = store.count(), settings.min_entities
    notes = f"the {store.count(least)} of {stored} notes with ≥ {least} entities" if least else f"{stored} notes"
    bound = request.hyperparameters.max_seconds
    within = f" (at most {bound:.0f} s)" if bound is not None else ""
    print(f"training {settings.training.epochs:g} epoch(s){within} on {notes} ...", flush=True)


def train(trainer: TrainerService, request: TrainingRequested, curve: TrainingCurve) -> TrainingReport:
    """The trainer's own training path (:meth:`TrainerService.train_now`, as its worker runs it), its progress drawn
    by ``curve`` (the trainer's progress callback) and kept as the learning curve."""
    from synthner_trainer.store import EmptyDatasetError

    announce_training(trainer.settings, trainer.store, request)
    try:
        with curve:
            outcome = trainer.train_now(request)
    except (EmptyDatasetError, ValueError) as exc:
        raise DemoError(f"training refused: {exc} (generate more notes: --notes N)") from None
    version = outcome.version
    return TrainingReport(outcome.published, version.name, version.path, outcome.metrics, curve.history)


# --- over RabbitMQ ----------------------------------------------------------------------------------------------------


async def within_deadline(
    options: DemoOptions,
    *,
    stage: CurrentStage,
    transport: Transport,
    llm: LocalLLM,
    stages: Stages,
    broker: BrokerSettings,
) -> tuple[PipelineRun, TrainingReport, Sample | None]:
    """The broker run (services in this process, or separate processes) under the overall deadline: a stuck stage
    ends the run with one line that names it."""
    where = f"; the services' logs are in {options.workdir / 'logs'}" if transport == "processes" else ""
    try:
        async with asyncio.timeout(options.deadline_s) as deadline:
            if transport == "processes":
                return await run_in_processes(options, stages, llm, broker, stage)
            run, training = await run_over_broker(stages, llm, broker, options.progress, stage)
            return run, training, None
    except TimeoutError as exc:
        if deadline.expired():
            raise StageFailed(
                f"the run did not finish within --deadline {options.deadline_s:g} s: stuck at {stage.name}{where}"
            ) from None
        raise StageFailed(f"{exc}{where}") from None


async def run_over_broker(
    stages: Stages, llm: LocalLLM, broker: BrokerSettings, progress: ProgressView, stage: CurrentStage
) -> tuple[PipelineRun, TrainingReport]:
    """Each stage run as its composition root built it, on RabbitMQ (a fresh namespace, deleted afterwards), fed by
    one published job."""
    from synthner.local_pipeline import delete_namespace, running, running_apps
    from synthner_annotator import app as annotator_app
    from synthner_generator import app as generator_app
    from synthner_trainer import app as trainer_app

    bars = StageBars(stages.request.count, progress)
    curve = TrainingCurve(progress)
    observer = Observer(broker, "demo", bars.see)
    job = stages.request
    resources = AsyncExitStack()
    trainer_task: asyncio.Task[bool] | None = None
    try:
        built = await trainer_app.build(stages.trainer, broker, progress=curve)
        resources.push_async_callback(built.aclose)
        trainer = built.trainer
        annotator = await annotator_app.build(stages.annotator, broker)
        resources.push_async_callback(annotator.aclose)
        async with AsyncExitStack() as generating:
            generator = await generator_app.build(stages.generator, broker)
            generating.push_async_callback(generator.aclose)
            async with running([observer.service]), running_apps([generator, annotator]):
                trainer_task = asyncio.create_task(built.run())
                await first_of(trainer_task, built.wait_started())
                print(f"namespace {broker.namespace}: generating {job.count} notes with {llm.model} ...", flush=True)
                await observer.service.broker.publisher.publish(job)
                expected = await generate_and_annotate(observer, job.count, stage, bars)
                with curve:
                    await train_stored(
                        stages, observer, trainer=trainer, trainer_task=trainer_task, expected=expected, stage=stage
                    )
        outcome = trainer.outcomes[-1]
        report = TrainingReport(
            outcome.published, outcome.version.name, outcome.version.path, outcome.metrics, curve.history
        )
        return observer.run, report
    finally:
        bars.close()
        if trainer_task is not None:
            built.request_stop()
            await asyncio.gather(trainer_task, return_exceptions=True)
        await resources.aclose()
        try:
            await delete_namespace(broker, observer)
        except Exception as exc:  # noqa: BLE001 - clean-up must not hide the run's own outcome
            print(f"note: could not delete namespace {broker.namespace}: {type(exc).__name__}", file=sys.stderr)


async def train_stored(
    stages: Stages,
    observer: Observer,
    *,
    trainer: TrainerService,
    trainer_task: asyncio.Task[bool],
    expected: int,
    stage: CurrentStage,
) -> None:
    """Once the trainer service has stored the ``expected`` notes: one training request over the broker, then its
    outcome and the ``ModelPublished`` event (unless the gate held the model back)."""
    stage.name = "the trainer storing documents"
    await wait_until(lambda: trainer.store.count() >= expected, 120, "the trainer storing documents")
    request = training_request(stages, stages.request.job_id)
    stage.name = "training"
    announce_training(stages.trainer, trainer.store, request)
    await observer.service.broker.publisher.publish(request)
    await wait_until(lambda: bool(trainer.outcomes) or trainer_task.done(), 3600, "training")
    if not trainer.outcomes:
        raise DemoError("the trainer service stopped or its training failed: see the log above")
    await observer.wait_for(
        lambda run: bool(run.of(ModelPublished)) or trainer.outcomes[-1].published is None,
        60,
        "the ModelPublished event",
    )


# --- separate processes -----------------------------------------------------------------------------------------------


def process_specs(stages: Stages, broker: BrokerSettings, key_file: Path, api_port: int) -> list[ProcessSpec]:
    """The four services' processes: production entry points, the stages' settings as environment variables, a
    fresh health port each (the NER API answers on ``api_port``)."""
    from synthner.processes import broker_env, ner_api_process, stage_process

    common = broker_env(broker)
    return [
        stage_process("generator", stages.generator, common),
        stage_process("annotator", stages.annotator, common),
        stage_process("trainer", stages.trainer, common),
        ner_api_process(
            common,
            key_file=key_file,
            model_store=stages.trainer.models_dir,
            port=api_port,
            instance=NER_API_INSTANCE,
            torch_threads=2,
        ),
    ]


async def run_in_processes(  # noqa: PLR0915 - one supervised run, easier to follow in one piece
    options: DemoOptions, stages: Stages, llm: LocalLLM, broker: BrokerSettings, stage: CurrentStage
) -> tuple[PipelineRun, TrainingReport, Sample]:
    """Generator, annotator, trainer and NER API as separate OS processes (their production entry points, settings
    in the environment) on RabbitMQ, supervised: a process that dies fails the run with a pointer to its log, and
    all are stopped at the end. Returns the run, the training and the sample request answered by the NER API."""
    from synthner.demo.probe import API_KEY_NAME, ask
    from synthner.local_pipeline import delete_namespace, running
    from synthner.processes import write_api_key
    from synthner.supervisor import ProcessFailed, Supervisor
    from synthner_shared.local_llm import free_port
    from synthner_trainer.store import DatasetStore

    bars = StageBars(stages.request.count, options.progress)
    observer = Observer(broker, "demo", bars.see)
    supervisor = Supervisor(options.workdir / "logs", grace_s=broker.shutdown_grace_s + 10)
    key = write_api_key(options.workdir / "ner-api", API_KEY_NAME)
    api_port = options.api_port or free_port()
    specs = process_specs(stages, broker, key.key_file, api_port)
    job = stages.request
    store: DatasetStore | None = None
    try:
        async with running([observer.service]):
            stage.name = "starting the service processes"
            for spec in specs:
                await supervisor.start(spec)
            print(f"started {', '.join(supervisor.processes)} as processes (logs in {supervisor.log_dir})", flush=True)
            for spec in specs:
                assert spec.ready_url is not None
                await supervisor.wait_ready(spec.name, spec.ready_url, 300)
            print(f"namespace {broker.namespace}: generating {job.count} notes with {llm.model} ...", flush=True)
            await observer.service.broker.publisher.publish(job)
            expected = await supervisor.guard(generate_and_annotate(observer, job.count, stage, bars))
            # The trainer process owns the store; this read-only view follows its progress (SQLite, WAL).
            store = view = DatasetStore(stages.trainer.store_path, read_only=True)
            stage.name = "the trainer storing documents"
            await supervisor.guard(wait_until(lambda: view.count() >= expected, 120, stage.name))
            request = training_request(stages, job.job_id)
            stage.name = "training"
            announce_training(stages.trainer, view, request)
            await observer.service.broker.publisher.publish(request)

            def finished() -> bool:
                status = view.request_status(str(request.message_id))
                return status is not None and status[0] in ("done", "failed")

            await supervisor.guard(wait_until(finished, options.deadline_s, "training"))
            status, detail = view.request_status(str(request.message_id)) or ("failed", None)
            if status == "failed":
                raise StageFailed(f"training failed ({detail}): see {supervisor.log_path('trainer')}")
            stage.name = "the ModelPublished event"
            await supervisor.guard(observer.wait_for(lambda run: bool(run.of(ModelPublished)), 60, stage.name))
            published = observer.run.of(ModelPublished)[-1]
            stage.name = "the NER API loading the model"
            await supervisor.wait_ready("ner-api", f"http://127.0.0.1:{api_port}/readyz", 300)
            sample = await ask(f"http://127.0.0.1:{api_port}", key)
    except ProcessFailed as exc:
        raise StageFailed(str(exc)) from None
    finally:
        bars.close()
        codes = await supervisor.stop()
        if store is not None:
            store.close()
        unclean = {name: code for name, code in codes.items() if code not in (0, -signal.SIGTERM)}
        if unclean:
            print(f"note: processes that did not stop cleanly (exit codes): {unclean}", file=sys.stderr)
        try:
            await delete_namespace(broker, observer, {"ner-api": [NER_API_INSTANCE]})
        except Exception as exc:  # noqa: BLE001 - clean-up must not hide the run's own outcome
            print(f"note: could not delete namespace {broker.namespace}: {type(exc).__name__}", file=sys.stderr)
    version_path = Path(published.artifact_uri)
    report = TrainingReport(published, published.model_version, version_path, list(published.metrics), [])
    return observer.run, report, sample


# --- waiting ----------------------------------------------------------------------------------------------------------


async def generate_and_annotate(observer: Observer, count: int, stage: CurrentStage, bars: StageBars) -> int:
    """Wait (observing the messages) until every requested note is finished and every generated one annotated;
    returns the number of annotated documents."""
    stage.name = "generation"
    await observer.wait_for(lambda run: run.counts().requested >= count, 600 + 60 * count, "generation")
    generated = observer.run.counts().generated

    def annotated(run: PipelineRun) -> bool:
        return len(run.of(DocumentAnnotated)) + len(run.of(AnnotationFailed)) >= generated

    stage.name = "annotation"
    await observer.wait_for(annotated, 300 + 30 * count, "annotation")
    bars.close()
    return len(observer.run.of(DocumentAnnotated))


async def first_of(task: asyncio.Task[bool], started: Awaitable[None]) -> None:
    """Wait until ``started`` completes; if ``task`` ends first, raise its error."""
    waiter = asyncio.ensure_future(started)
    done, _ = await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        task.result()
        raise DemoError("a service stopped before it started consuming")


async def wait_until(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    """Poll a condition on state another task owns (the trainer's SQLite store), with a deadline."""
    try:
        async with asyncio.timeout(deadline_s):
            while not condition():  # noqa: ASYNC110 - the state is a SQLite store another task writes; no event
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise StageFailed(f"{what} did not finish within {deadline_s:g} s: see the log above") from None
