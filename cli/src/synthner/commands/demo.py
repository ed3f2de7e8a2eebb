"""``synthner demo``: the whole loop on this machine — generate, annotate, train, evaluate, publish, serve, report.

Every stage is the service's own handler built from its own settings class; only the transport differs
(:mod:`synthner.local_pipeline`). The last stdout line is ``f1=<strict micro F1 on the gold set> seconds=<wall>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from synthner.local_pipeline import Observer, PipelineRun
    from synthner_shared.contracts import EvaluationResult, Mention
    from synthner_shared.local_llm import LocalLLM

LABEL = "Disease"
REPO_DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "ncbi_disease"
"""``../shared/data/ncbi_disease`` beside the repository (the gold sets' usual place)."""
SAMPLE_TEXT = (
    "The patient has a history of type 2 diabetes and Duchenne muscular dystrophy; "
    "her brother was treated for colorectal cancer."
)
OWNED = (
    "generator",
    "annotator",
    "trainer",
    "ner-api",
    "gold",
    "logs",
    "notes.jsonl",
    "report.html",
    "summary.json",
    "sample.json",
    "demo.log",
)
"""What a run writes under its workdir; a new run replaces exactly these (and the ``figure-*.png`` files)."""


class DemoError(RuntimeError):
    """Bad input or an unavailable dependency; the message is one line that says what to do."""

    exit_code = 2


class StageFailed(DemoError):
    """A stage failed or got stuck while running (a process died, the deadline passed)."""

    exit_code = 1


@dataclass
class CurrentStage:
    """The stage the run is in, for the deadline's error message."""

    name: str = "starting"


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    notes: int
    quick: bool
    annotator: Literal["lexicon", "llm"]
    transport: Literal["auto", "in-process", "broker", "processes"]
    lexicon_source: Path
    gold: Path
    gold_limit: int | None
    epochs: float
    max_new_tokens: int
    seed: int
    api_port: int | None
    deadline_s: float
    progress: bool = False


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole loop locally: LLM notes -> annotate -> train -> evaluate -> serve -> report.html",
        description=(
            "Run the whole pipeline on this machine with the embedded defaults: llama.cpp with SmolLM2 writes\n"
            "synthetic English notes about diseases (label-conditioned on a Disease lexicon from NCBI-disease train),\n"
            "the lexicon annotator labels them, all-MiniLM-L6-v2 is fine-tuned, scored on the real NCBI-disease test\n"
            "set, published into a model store and served by the NER API (one sample request is shown), and\n"
            "report.html (with its figures as PNG files beside it) is written. The stages run over the local\n"
            "RabbitMQ when it is reachable, else in one process; --processes runs each service as its own OS\n"
            "process (its production entry point) over RabbitMQ. The last line is\n"
            "`f1=<strict micro F1 on the test set> seconds=<wall time>`.\n\n"
            "SmolLM2-135M writes weak medical text, so the F1 is low; the demo shows the loop, not the quality.\n\n"
            "examples:\n  synthner demo --quick\n  synthner demo --workdir out/demo --notes 60 --in-process\n"
            "  synthner demo --quick --processes"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", type=Path, default=Path("out/demo"), help="where every artifact goes")
    parser.add_argument("--quick", action="store_true", help="CI size: 6 notes, 3 epochs, the first 20 test documents")
    parser.add_argument("--notes", type=int, help="synthetic notes to generate (default 120, quick 6)")
    parser.add_argument("--annotator", choices=["lexicon", "llm"], default="lexicon", help="default: lexicon")
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--in-process", dest="transport", action="store_const", const="in-process")
    transport.add_argument(
        "--broker",
        dest="transport",
        action="store_const",
        const="broker",
        help="require RabbitMQ (AMQP_URL; default 127.0.0.1:5672)",
    )
    transport.add_argument(
        "--processes",
        dest="transport",
        action="store_const",
        const="processes",
        help="run generator, annotator, trainer and NER API as separate processes over RabbitMQ (requires it)",
    )
    parser.set_defaults(transport="auto")
    parser.add_argument(
        "--lexicon-source",
        type=Path,
        default=REPO_DATA / "train.jsonl",
        help="gold JSONL whose Disease mentions seed the notes and the lexicon annotator",
    )
    parser.add_argument("--gold", type=Path, default=REPO_DATA / "test.jsonl", help="real gold JSONL to score on")
    parser.add_argument("--gold-limit", type=int, help="score on the first N gold documents (quick: 20)")
    parser.add_argument("--epochs", type=float, help="training epochs (default 10, quick 3)")
    parser.add_argument("--max-new-tokens", type=int, help="tokens per note (default 320, quick 256)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--api-port", type=int, help="NER API port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--deadline",
        type=float,
        help="over RabbitMQ: seconds the stages may take in all before the run fails (default 3600, quick 900)",
    )
    parser.set_defaults(handler=run_demo_command)


def options_from(args: argparse.Namespace) -> DemoOptions:
    quick = bool(args.quick)
    notes = args.notes if args.notes is not None else (6 if quick else 120)
    if notes < 2:
        raise DemoError("--notes must be at least 2 (one note is held out for early stopping)")
    if args.deadline is not None and args.deadline <= 0:
        raise DemoError("--deadline must be a positive number of seconds")
    return DemoOptions(
        workdir=args.workdir,
        notes=notes,
        quick=quick,
        annotator=args.annotator,
        transport=args.transport,
        lexicon_source=args.lexicon_source,
        gold=args.gold,
        gold_limit=args.gold_limit if args.gold_limit is not None else (20 if quick else None),
        epochs=args.epochs if args.epochs is not None else (3.0 if quick else 10.0),
        max_new_tokens=args.max_new_tokens or (256 if quick else 320),
        seed=args.seed,
        api_port=args.api_port,
        deadline_s=args.deadline if args.deadline is not None else (900.0 if quick else 3600.0),
        progress=bool(getattr(args, "show_progress", False)),
    )


def run_demo_command(args: argparse.Namespace) -> int:
    from synthner_shared.stopping import Stopped, run_stoppable

    started = time.perf_counter()
    try:
        options = options_from(args)
        # SIGTERM/SIGINT run the clean-up (the supervised service processes run in sessions of their own)
        final_line = run_stoppable(run_demo(options, started))
    except (DemoError, Stopped) as exc:
        print(f"synthner demo: {exc}", file=sys.stderr)
        return exc.exit_code
    print(final_line)  # the same line as in report.html and summary.json
    return 0


# --- steps -----------------------------------------------------------------------------------------------------------


def check_inputs(options: DemoOptions) -> None:
    from synthner_shared.local_llm import LocalLLMError, check_port_free

    for what, path in (("lexicon source", options.lexicon_source), ("gold set", options.gold)):
        if not path.is_file():
            raise DemoError(
                f"{what} {path} not found: put the NCBI-disease JSONL files in ../shared/data/ncbi_disease "
                f"or pass --{'lexicon-source' if what == 'lexicon source' else 'gold'} FILE"
            )
    if options.api_port is not None:
        try:
            check_port_free(options.api_port)
        except LocalLLMError as exc:
            raise DemoError(f"{exc} (--api-port)") from None


def prepare_workdir(workdir: Path) -> None:
    """Create the workdir; remove what an earlier run wrote there (and nothing else)."""
    from synthner.figures import PREFIX

    workdir.mkdir(parents=True, exist_ok=True)
    for path in [*(workdir / name for name in OWNED), *workdir.glob(f"{PREFIX}*.png")]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def lexicon(path: Path) -> list[Mention]:
    """Unique Disease mentions of the gold file (case-insensitive), in first-seen order."""
    from synthner_shared.documents import read_documents, unique_mentions

    mentions = unique_mentions(read_documents(path), [LABEL])
    if not mentions:
        raise DemoError(f"{path} has no {LABEL} mentions: pass a --lexicon-source with {LABEL} entities")
    return mentions


def write_gold(options: DemoOptions) -> Path:
    from synthner_shared.documents import read_documents, write_documents

    documents = list(read_documents(options.gold))
    if options.gold_limit is not None:
        documents = documents[: options.gold_limit]
    if not documents:
        raise DemoError(f"gold set {options.gold} is empty")
    # The trainer names the set after its folder and file: "gold:gold/ncbi_disease-test-first20.jsonl".
    suffix = f"-first{options.gold_limit}" if options.gold_limit is not None else ""
    path = options.workdir / "gold" / f"{options.gold.parent.name}-{options.gold.stem}{suffix}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_documents(path, documents)
    return path


@dataclass
class Stages:
    """The stages' settings, built once from the options (the same classes the services read at start-up)."""

    generator: Any
    annotator: Any
    trainer: Any
    request: Any


def build_stages(options: DemoOptions, llm: LocalLLM, mentions: Sequence[Mention], gold: Path) -> Stages:
    from synthner_annotator.backends.lexicon import LexiconSettings
    from synthner_annotator.backends.llm import LLMAnnotatorSettings
    from synthner_annotator.endpoint import EndpointSettings
    from synthner_annotator.prompts import PromptSettings
    from synthner_annotator.settings import AnnotatorSettings
    from synthner_generator.settings import GeneratorSettings
    from synthner_shared.contracts import GenerationRequested, PromptRef, SamplingParameters
    from synthner_trainer.settings import TrainerSettings, TrainingConfig

    generator = GeneratorSettings(
        backend="openai",
        endpoint_url=llm.base_url,  # type: ignore[arg-type]
        endpoint_zone="internal",
        model=llm.model,
        concurrency=2,
        request_timeout_s=600,
        llm_attempts=2,
        part_size=2,  # progress (bars, the observer) per two notes; concurrency 2 keeps the LLM busy
        labels=[LABEL],
        entities_per_label=3,
        min_chars=120,
        state_dir=options.workdir / "generator",
        tracker_db=options.workdir / "generator" / "tracker.sqlite3",
        instance="demo",
    )
    spec: LexiconSettings | LLMAnnotatorSettings
    if options.annotator == "lexicon":
        # Terms under 3 characters ("AT" for ataxia telangiectasia) match common words once case is folded.
        spec = LexiconSettings(name="lexicon", document_files=[options.lexicon_source], min_term_chars=3)
    else:
        endpoint = EndpointSettings(
            name="llama-cpp",
            base_url=llm.base_url,
            model=llm.model,
            external=False,
            max_concurrency=1,
            structured_output="json_object_schema",
            max_tokens=128,
            timeout_s=600,
            max_attempts=2,
        )
        spec = LLMAnnotatorSettings(endpoint=endpoint, prompt=PromptSettings(name="json_mentions"), malformed_retries=0)
    annotator = AnnotatorSettings(labels=[LABEL], annotator=spec, producer="annotator-demo")
    trainer = TrainerSettings(
        data_dir=options.workdir / "trainer",
        labels=[LABEL],
        gold=gold,
        dev_fraction=0.2,
        # The dev split is a handful of notes: its F1 stays 0 for the first epochs of so small a run, and stopping on
        # it ended training before the model had learned anything (f1=0.0000). Every epoch runs; the best is kept.
        patience=0,
        device="cpu",
        # A few dozen short notes give few optimiser steps: small batches and a higher learning rate than the
        # service's default make them count.
        training=TrainingConfig(epochs=options.epochs, batch_size=4, learning_rate=3e-4, max_length=256, stride=64),
    )
    request = GenerationRequested(
        job_id=f"demo-{int(time.time())}",
        producer="synthner-demo",
        count=options.notes,
        language="en",
        note_types=["discharge_summary", "progress_note", "referral_letter"],
        entity_labels=[LABEL],
        mode="label_conditioned",
        seed=options.seed,
        sampling=SamplingParameters(temperature=0.8, top_p=0.95, max_new_tokens=options.max_new_tokens),
        prompt=PromptRef(name="clinical_note_brief", version="v1"),
        seed_lexicon=list(mentions),
    )
    return Stages(generator, annotator, trainer, request)


class StageBars:
    """Progress of generation (notes finished of those requested) and annotation (documents of the notes
    generated), fed with every message the run sees. Numbers only: no note text reaches the terminal."""

    def __init__(self, notes: int, enabled: bool) -> None:
        from synthner.progress import Bar

        self.generation = Bar(notes, "generating notes", enabled=enabled, unit="note", position=0)
        self.annotation = Bar(notes, "annotating", enabled=enabled, unit="note", position=1)
        self.generated = 0
        self.rejected = 0

    def see(self, message: Any) -> None:
        from synthner_shared.contracts import AnnotationFailed, DocumentAnnotated, GenerationProgress

        if isinstance(message, GenerationProgress) and message.event == "part":
            self.generated += message.generated
            self.rejected += message.requested - message.generated
            self.generation.advance(message.requested)
            self.generation.note(generated=self.generated, other=self.rejected)
            if self.generation.total is not None and self.generation.count >= self.generation.total:
                self.annotation.update_to(self.annotation.count, total=self.generated)
        elif isinstance(message, DocumentAnnotated | AnnotationFailed):
            self.annotation.advance()

    def close(self) -> None:
        self.generation.close()
        self.annotation.close()


@dataclass
class TrainingReport:
    published: Any  # ModelPublished | None
    version: str
    version_path: Path
    metrics: list[EvaluationResult]
    history: list[dict[str, float]]


async def run_in_process(stages: Stages, llm: LocalLLM, progress: bool) -> tuple[PipelineRun, TrainingReport]:
    """The handlers chained in memory: generator -> annotator -> trainer's store; then one training request."""
    from synthner.local_pipeline import run_in_memory
    from synthner_annotator.factory import build_annotator
    from synthner_annotator.handler import make_handler
    from synthner_generator.service import build_generator
    from synthner_shared.contracts import DocumentAnnotated, GenerationRequested, NoteGenerated, TrainingRequested
    from synthner_trainer.registry import ModelRegistry
    from synthner_trainer.store import DatasetStore

    settings = stages.trainer
    store = DatasetStore(settings.store_path)
    registry = ModelRegistry(settings.models_dir)
    annotator = build_annotator(stages.annotator.annotator, stages.annotator.labels)
    annotate = make_handler(
        annotator, stages.annotator.labels, stages.annotator.producer, stages.annotator.max_note_chars
    )

    async def keep(document: DocumentAnnotated) -> list[Any]:
        await asyncio.to_thread(store.add, document)
        return []

    try:
        async with build_generator(stages.generator) as generator:
            print(f"generating {stages.request.count} notes with {llm.model} (llama.cpp) ...", flush=True)
            bars = StageBars(stages.request.count, progress)
            try:
                run = await run_in_memory(
                    stages.request,
                    {GenerationRequested: generator.handle, NoteGenerated: annotate, DocumentAnnotated: keep},
                    bars.see,
                )
            finally:
                bars.close()
        request = TrainingRequested(correlation_id=stages.request.job_id, producer="synthner-demo")
        report = await asyncio.to_thread(train, request, store, registry, settings, progress)
        run.messages.append(request)
        if report.published is not None:
            run.messages.append(report.published)
        return run, report
    finally:
        await annotator.aclose()
        store.close()


def train(request: Any, store: Any, registry: Any, settings: Any, show_progress: bool = False) -> TrainingReport:
    """The trainer's own training path (:func:`train_and_register`, as ``run_training_request`` calls it), with
    the epoch-end progress kept for the learning curve."""
    from synthner.progress import Bar, follow_training
    from synthner_trainer.base_model import default_base_model
    from synthner_trainer.pipeline import train_and_register
    from synthner_trainer.store import EmptyDatasetError
    from synthner_trainer.training import Progress, log_progress

    history: list[dict[str, float]] = []
    steps = Bar(None, "training", enabled=show_progress, unit="step")
    follow = follow_training(steps, log_progress)

    def progress(update: Progress) -> None:
        follow(update)
        if update.dev_f1 is not None:
            history.append({"epoch": round(update.epoch, 2), "loss": update.loss, "dev_strict_f1": update.dev_f1})

    print(f"training {settings.training.epochs:g} epoch(s) on {store.count()} annotated notes ...", flush=True)
    try:
        manifest = store.create_version(request.dataset)
        with steps:
            outcome = train_and_register(
                store.documents(manifest.version),
                manifest=manifest,
                settings=settings,
                registry=registry,
                config=settings.training.override(request.hyperparameters),
                base_model=settings.base_model or default_base_model(),
                correlation_id=request.correlation_id,
                progress=progress,
            )
    except (EmptyDatasetError, ValueError) as exc:
        raise DemoError(f"training refused: {exc} (generate more notes: --notes N)") from None
    version = outcome.version
    return TrainingReport(outcome.published, version.name, version.path, outcome.metrics, history)


async def run_over_broker(
    stages: Stages, llm: LocalLLM, broker: Any, progress: bool, stage: CurrentStage
) -> tuple[PipelineRun, TrainingReport]:
    """Each stage its own Service on RabbitMQ (a fresh namespace, deleted afterwards), fed by one published job."""
    from synthner.local_pipeline import Observer, delete_namespace, running
    from synthner_annotator.factory import build_annotator
    from synthner_annotator.service import build_service
    from synthner_generator.service import build_generator, generator_service
    from synthner_shared.contracts import ModelPublished, TrainingRequested
    from synthner_trainer.service import TrainerService

    bars = StageBars(stages.request.count, progress)
    observer = Observer(broker, "demo", bars.see)
    trainer = TrainerService(stages.trainer, broker)
    annotator = build_annotator(stages.annotator.annotator, stages.annotator.labels)
    job = stages.request
    trainer_task: asyncio.Task[bool] | None = None
    try:
        async with build_generator(stages.generator) as generator:
            services = [
                observer.service,
                generator_service(broker, stages.generator, generator),
                build_service(stages.annotator, broker, annotator),
            ]
            async with running(services):
                trainer_task = asyncio.create_task(trainer.run(install_signal_handlers=False))
                await first_of(trainer_task, trainer.service.wait_started())
                print(f"namespace {broker.namespace}: generating {job.count} notes with {llm.model} ...", flush=True)
                await observer.service.broker.publisher.publish(job)
                expected = await generate_and_annotate(observer, job.count, stage, bars)
                stage.name = "the trainer storing documents"
                await wait_until(lambda: trainer.store.count() >= expected, 120, "the trainer storing documents")
                request = TrainingRequested(correlation_id=job.job_id, producer="synthner-demo")
                stage.name = "training"
                print(f"training {stages.trainer.training.epochs:g} epoch(s) on {expected} notes ...", flush=True)
                await observer.service.broker.publisher.publish(request)
                await wait_until(lambda: bool(trainer.outcomes) or trainer_task.done(), 3600, "training")
                if not trainer.outcomes:
                    raise DemoError("the trainer service stopped or its training failed: see the log above")
                await observer.wait_for(
                    lambda run: bool(run.of(ModelPublished)) or trainer.outcomes[-1].published is None,
                    60,
                    "the ModelPublished event",
                )
        outcome = trainer.outcomes[-1]
        report = TrainingReport(outcome.published, outcome.version.name, outcome.version.path, outcome.metrics, [])
        return observer.run, report
    finally:
        bars.close()
        if trainer_task is not None:
            trainer.request_stop()
            await asyncio.gather(trainer_task, return_exceptions=True)
        await annotator.aclose()
        trainer.close()
        try:
            await delete_namespace(broker, observer)
        except Exception as exc:  # noqa: BLE001 - clean-up must not hide the run's own outcome
            print(f"note: could not delete namespace {broker.namespace}: {type(exc).__name__}", file=sys.stderr)


def process_specs(stages: Stages, broker: Any, key_file: Path, api_port: int) -> list[Any]:
    """The four services' processes: production entry points, the stages' settings as environment variables, a
    fresh health port each (the NER API answers on ``api_port``)."""
    from synthner.supervisor import ProcessSpec, module_argv, settings_env
    from synthner_shared.local_llm import free_port

    common = {"AMQP_URL": broker.url.get_secret_value(), "SYNTHNER_BROKER_NAMESPACE": broker.namespace}
    health = {name: free_port() for name in ("generator", "annotator", "trainer")}
    return [
        ProcessSpec(
            "generator",
            module_argv("synthner_generator"),
            {
                **common,
                **settings_env("SYNTHNER_GENERATOR_", stages.generator),
                "SYNTHNER_GENERATOR_HEALTH_PORT": str(health["generator"]),
            },
            f"http://127.0.0.1:{health['generator']}/readyz",
        ),
        ProcessSpec(
            "annotator",
            module_argv("synthner_annotator"),
            {
                **common,
                **settings_env("SYNTHNER_ANNOTATOR_", stages.annotator),
                "SYNTHNER_ANNOTATOR_HEALTH_HOST": "127.0.0.1",
                "SYNTHNER_ANNOTATOR_HEALTH_PORT": str(health["annotator"]),
            },
            f"http://127.0.0.1:{health['annotator']}/readyz",
        ),
        ProcessSpec(
            "trainer",
            module_argv("synthner_trainer"),
            {
                **common,
                **settings_env("SYNTHNER_TRAINER_", stages.trainer),
                "SYNTHNER_TRAINER_HEALTH_PORT": str(health["trainer"]),
            },
            f"http://127.0.0.1:{health['trainer']}/readyz",
        ),
        ProcessSpec(
            "ner-api",
            module_argv("synthner_ner_api"),
            {
                **common,
                "SYNTHNER_NER_API_AUTH_MODE": "api_keys",
                "SYNTHNER_NER_API_API_KEYS_FILE": str(key_file),
                "SYNTHNER_NER_API_MODEL_STORE": str(stages.trainer.models_dir),
                "SYNTHNER_NER_API_LISTEN_FOR_MODELS": "true",
                "SYNTHNER_NER_API_INSTANCE": "demo",
                "SYNTHNER_NER_API_HOST": "127.0.0.1",
                "SYNTHNER_NER_API_PORT": str(api_port),
                "SYNTHNER_NER_API_TORCH_THREADS": "2",
            },
            # Live first; ready (a model loaded) only after the trainer publishes one.
            f"http://127.0.0.1:{api_port}/livez",
        ),
    ]


async def run_in_processes(  # noqa: PLR0915 - one supervised run, easier to follow in one piece
    options: DemoOptions, stages: Stages, llm: LocalLLM, broker: Any, stage: CurrentStage
) -> tuple[PipelineRun, TrainingReport, dict[str, Any]]:
    """Generator, annotator, trainer and NER API as separate OS processes (their production entry points, settings
    in the environment) on RabbitMQ, supervised: a process that dies fails the run with a pointer to its log, and
    all are stopped at the end. Returns the run, the training and the sample request answered by the NER API."""
    from synthner.local_pipeline import Observer, delete_namespace, running
    from synthner.supervisor import ProcessFailed, Supervisor
    from synthner_shared.contracts import ModelPublished, TrainingRequested
    from synthner_shared.local_llm import free_port
    from synthner_trainer.store import DatasetStore

    bars = StageBars(stages.request.count, options.progress)
    observer = Observer(broker, "demo", bars.see)
    supervisor = Supervisor(options.workdir / "logs", grace_s=broker.shutdown_grace_s + 10)
    key, key_file, key_path = write_api_key(options.workdir / "ner-api")
    api_port = options.api_port or free_port()
    specs = process_specs(stages, broker, key_file, api_port)
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
            store = DatasetStore(stages.trainer.store_path)
            stage.name = "the trainer storing documents"
            await supervisor.guard(wait_until(lambda: store.count() >= expected, 120, stage.name))
            request = TrainingRequested(correlation_id=job.job_id, producer="synthner-demo")
            stage.name = "training"
            print(f"training {stages.trainer.training.epochs:g} epoch(s) on {expected} notes ...", flush=True)
            await observer.service.broker.publisher.publish(request)

            def finished() -> bool:
                status = store.request_status(str(request.message_id))
                return status is not None and status[0] in ("done", "failed")

            await supervisor.guard(wait_until(finished, options.deadline_s, "training"))
            status, detail = store.request_status(str(request.message_id)) or ("failed", None)
            if status == "failed":
                raise StageFailed(f"training failed ({detail}): see {supervisor.log_path('trainer')}")
            stage.name = "the ModelPublished event"
            await supervisor.guard(observer.wait_for(lambda run: bool(run.of(ModelPublished)), 60, stage.name))
            published: ModelPublished = observer.run.of(ModelPublished)[-1]
            stage.name = "the NER API loading the model"
            await supervisor.wait_ready("ner-api", f"http://127.0.0.1:{api_port}/readyz", 300)
            sample = await ask(f"http://127.0.0.1:{api_port}", key, key_path)
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
            await delete_namespace(broker, observer, {"ner-api": ["demo"]})
        except Exception as exc:  # noqa: BLE001 - clean-up must not hide the run's own outcome
            print(f"note: could not delete namespace {broker.namespace}: {type(exc).__name__}", file=sys.stderr)
    version_path = Path(published.artifact_uri)
    report = TrainingReport(published, published.model_version, version_path, list(published.metrics), [])
    return observer.run, report, sample


async def generate_and_annotate(observer: Observer, count: int, stage: CurrentStage, bars: StageBars) -> int:
    """Wait (observing the messages) until every requested note is finished and every generated one annotated;
    returns the number of annotated documents."""
    from synthner_shared.contracts import AnnotationFailed, DocumentAnnotated

    stage.name = "generation"
    await observer.wait_for(lambda run: run.counts().requested >= count, 600 + 60 * count, "generation")
    generated = observer.run.counts().generated

    def annotated(run: PipelineRun) -> bool:
        return len(run.of(DocumentAnnotated)) + len(run.of(AnnotationFailed)) >= generated

    stage.name = "annotation"
    await observer.wait_for(annotated, 300 + 30 * count, "annotation")
    bars.close()
    return len(observer.run.of(DocumentAnnotated))


async def first_of(task: asyncio.Task[Any], started: Any) -> None:
    """Wait until ``started`` completes; if ``task`` ends first, raise its error."""
    waiter = asyncio.ensure_future(started)
    done, _ = await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        task.result()
        raise DemoError("a service stopped before it started consuming")


async def wait_until(condition: Any, deadline_s: float, what: str) -> None:
    """Poll a condition on state another task owns (the trainer's SQLite store), with a deadline."""
    try:
        async with asyncio.timeout(deadline_s):
            while not condition():  # noqa: ASYNC110 - the state is a SQLite store another task writes; no event
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise StageFailed(f"{what} did not finish within {deadline_s:g} s: see the log above") from None


async def choose_transport(options: DemoOptions) -> tuple[Literal["in-process", "broker", "processes"], Any]:
    """The broker when asked for or reachable, else in process; the broker settings carry a fresh namespace."""
    from synthner.local_pipeline import broker_reachable, new_namespace
    from synthner_shared.messaging import BrokerSettings

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


def write_api_key(folder: Path) -> tuple[str, Path, Path]:
    """A fresh API key for this run: its hash in the NER API's key file, the key itself in a 0600 file."""
    from synthner_ner_api.auth import hash_key, new_key

    folder.mkdir(parents=True, exist_ok=True)
    key = new_key()
    key_file = folder / "api-keys"
    key_file.write_text(f"demo:user:{hash_key(key)}\n", encoding="utf-8")
    key_path = folder / "api-key.txt"
    key_path.touch(mode=0o600)
    key_path.write_text(key + "\n", encoding="utf-8")
    return key, key_file, key_path


async def serve_and_ask(options: DemoOptions, models_dir: Path) -> dict[str, Any]:
    """Start the NER API on the model store with a fresh API key, send one request, return request and answer."""
    import httpx
    import uvicorn

    from synthner_ner_api.app import create_app
    from synthner_ner_api.loading import ServingLoader
    from synthner_ner_api.models import ModelRegistry
    from synthner_ner_api.settings import NerApiSettings
    from synthner_shared.local_llm import free_port

    key, key_file, key_path = write_api_key(options.workdir / "ner-api")
    port = options.api_port or free_port()
    settings = NerApiSettings(
        auth_mode="api_keys",
        api_keys_file=key_file,
        model_store=models_dir,
        listen_for_models=False,
        host="127.0.0.1",
        port=port,
        torch_threads=2,
    )
    registry = ModelRegistry(ServingLoader(settings), store=settings.model_store)
    app = create_app(settings, registry)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            async with asyncio.timeout(180):
                while True:
                    if task.done():
                        task.result()
                        raise DemoError(f"the NER API did not start on port {port}: is the port in use? (--api-port)")
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
        return await ask(base, key, key_path)
    except TimeoutError:
        raise DemoError(f"the NER API on port {port} was not ready within 180 s") from None
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


async def ask(base: str, key: str, key_path: Path) -> dict[str, Any]:
    """One sample request to a ready NER API; prints it and its answer, returns both."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        body = {"text": SAMPLE_TEXT}
        response = await client.post("/v1/ner", json=body, headers={"Authorization": f"Bearer {key}"})
        answer = {"status": response.status_code, "json": response.json()}
    sample = {"url": f"{base}/v1/ner", "request": body, "response": answer, "api_key_file": str(key_path)}
    print(f"\nNER API on {base} (API key in {key_path}); sample request and response:")
    print(f"  POST {base}/v1/ner  Authorization: Bearer <key>  {json.dumps(body)}")
    print(f"  -> {response.status_code} {json.dumps(answer['json'], ensure_ascii=False)}")
    return sample


def samples_from(run: PipelineRun, limit: int = 3) -> list[Any]:
    from synthner.report import SampleNote
    from synthner_shared.contracts import DocumentAnnotated

    # The notes with the most entities show the annotation best; the counts table gives the whole picture.
    documents: list[DocumentAnnotated] = sorted(run.of(DocumentAnnotated), key=lambda d: -len(d.entities))
    return [
        SampleNote(
            f"note {d.note_id[:12]} ({d.language}, {len(d.text)} characters, {len(d.entities)} entities)",
            d.text,
            [(e.start, e.end, e.label) for e in d.entities],
        )
        for d in documents[:limit]
    ]


def write_notes(path: Path, run: PipelineRun) -> int:
    from synthner_shared.contracts import DocumentAnnotated
    from synthner_shared.documents import Document, DocumentEntity, write_documents

    documents = [
        Document(
            id=d.note_id,
            text=d.text,
            entities=[DocumentEntity(start=e.start, end=e.end, label=e.label) for e in d.entities],
        )
        for d in run.of(DocumentAnnotated)
    ]
    return write_documents(path, documents)


def figure_files(report: Any, folder: Path) -> list[tuple[str, str]]:
    """The report's figures as PNG files in ``folder``: (artifact name, path) rows; none without matplotlib."""
    from synthner.figures import PREFIX, FiguresUnavailable, write_figures

    try:
        figures = write_figures(report, folder)
    except FiguresUnavailable as exc:
        print(f"note: no PNG figures: {exc}", file=sys.stderr)
        return []
    return [(f"figure ({figure.stem.removeprefix(PREFIX)}, PNG)", str(figure)) for figure in figures]


async def within_deadline(
    options: DemoOptions, *, stage: CurrentStage, transport: str, llm: LocalLLM, stages: Stages, broker: Any
) -> tuple[PipelineRun, TrainingReport, dict[str, Any] | None]:
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


async def run_demo(options: DemoOptions, started: float) -> str:
    """Run the demo; returns the last line, ``f1=<strict micro F1 on the gold set> seconds=<wall time>``. Prints
    progress and where each artifact is."""
    from synthner.logfile import logs_to

    check_inputs(options)
    transport, broker = await choose_transport(options)
    prepare_workdir(options.workdir)
    # The terminal shows the stages, progress and the summary; every INFO line (one per LLM request and per note)
    # goes to the run's log file.
    with logs_to(options.workdir / "demo.log"):
        return await run_prepared(options, started, transport, broker)


async def run_prepared(options: DemoOptions, started: float, transport: Any, broker: Any) -> str:
    """The demo after its checks, with the transport chosen and the workdir prepared."""
    from synthner.report import ReportData, render
    from synthner_shared.files import write_text_atomic
    from synthner_shared.local_llm import LocalLLMError, local_llm
    from synthner_shared.messaging import BrokerUnavailable

    mentions = lexicon(options.lexicon_source)
    gold_path = write_gold(options)
    stage = CurrentStage()
    sample: dict[str, Any] | None = None
    try:
        async with local_llm(n_threads=2) as llm:
            print(f"local LLM: llama.cpp at {llm.base_url} serving {llm.model_path.name}", flush=True)
            stages = build_stages(options, llm, mentions, gold_path)
            if transport == "in-process":
                run, training = await run_in_process(stages, llm, options.progress)
            else:
                run, training, sample = await within_deadline(
                    options, stage=stage, transport=transport, llm=llm, stages=stages, broker=broker
                )
    except LocalLLMError as exc:
        raise DemoError(str(exc)) from None
    except BrokerUnavailable as exc:
        raise DemoError(f"{exc}: start RabbitMQ or run with --in-process") from None
    if training.published is None:
        raise DemoError(f"model version {training.version} was not published by the gate: see the log above")
    gold_result = training.metrics[-1]
    f1 = gold_result.strict_micro.f1
    models_dir = stages.trainer.models_dir
    if sample is None:
        sample = await serve_and_ask(options, models_dir)
    (options.workdir / "sample.json").write_text(json.dumps(sample, indent=2, ensure_ascii=False), encoding="utf-8")
    notes_path = options.workdir / "notes.jsonl"
    write_notes(notes_path, run)
    counts = run.counts()
    artifacts = [
        ("synthetic notes with their annotations (JSONL)", str(notes_path)),
        ("generator state (dedup database)", str(options.workdir / "generator")),
        ("trainer dataset store (SQLite)", str(stages.trainer.store_path)),
        ("model store (versions/<v>/, current.json)", str(models_dir)),
        ("published model version", str(training.version_path)),
        ("gold set scored (real NCBI-disease test)", str(gold_path)),
        ("NER API key (this run only)", sample["api_key_file"]),
        ("sample request and response", str(options.workdir / "sample.json")),
        ("run summary (JSON)", str(options.workdir / "summary.json")),
        ("this report", str(options.workdir / "report.html")),
    ]
    configuration = {
        "transport": transport
        if broker is None
        else f"{transport} (RabbitMQ namespace {broker.namespace}, {broker.redacted_url})",
        "quick": options.quick,
        "LLM": f"{llm.model_path.name} via llama.cpp server",
        "notes requested": options.notes,
        "mode": "label_conditioned (Tang et al.): each prompt names Disease entities from the lexicon",
        "lexicon": f"{len(mentions)} unique Disease mentions from {options.lexicon_source.name}",
        "annotator": options.annotator,
        "base model": str(training.published.base_model),
        "epochs": options.epochs,
        "max new tokens per note": options.max_new_tokens,
        "seed": options.seed,
        "gold": f"{options.gold} ({gold_result.documents} documents)",
        "model version": training.version,
    }
    count_rows: list[tuple[str, int | float | str]] = [
        ("notes requested", counts.requested),
        ("generated (NoteGenerated)", counts.generated),
        ("rejected by quality filters", counts.rejected),
        ("dropped as duplicates", counts.duplicates),
        ("quarantined by the leak gate", counts.quarantined),
        ("generation failed", counts.generation_failed),
        ("annotated (DocumentAnnotated)", counts.annotated),
        ("annotation failed", counts.annotation_failed),
        ("entities in annotated notes", counts.entities),
        (
            "mentions proposed / aligned / dropped",
            f"{counts.mentions_found} / {counts.mentions_aligned} / {counts.mentions_dropped}",
        ),
        ("annotator agreement", "n/a (one annotator)" if counts.agreement is None else f"{counts.agreement:.3f}"),
    ]
    report = ReportData(
        title="synthner demo report",
        final_line="",  # set once the figures are written, with the wall time
        configuration=configuration,
        counts=count_rows,
        evaluations=training.metrics,
        learning_curve=training.history,
        learning_curve_note=(
            "Over the broker the trainer service runs the training; it records the best epoch in the model folder, "
            "not per-epoch progress. Run with --in-process for the curve."
            if transport != "in-process"
            else "No epoch finished."
        ),
        samples=samples_from(run),
        artifacts=artifacts,
        notes=[
            "SmolLM2-135M writes fluent but medically weak text, and the lexicon annotator labels only what it "
            "knows, so the F1 on real abstracts is low: this run shows the loop working, not the method's ceiling."
        ],
    )
    artifacts += figure_files(report, options.workdir)
    # The wall time up to the report, which the last line, report.html and summary.json all carry.
    seconds = time.perf_counter() - started
    final_line = f"f1={f1:.4f} seconds={seconds:.0f}"
    summary = {
        "f1": f1,
        "seconds": round(seconds),
        "counts": asdict(counts),
        "metrics": [m.model_dump(mode="json") for m in training.metrics],
        "configuration": {k: str(v) for k, v in configuration.items()},
        "artifacts": dict(artifacts),
    }
    write_text_atomic(options.workdir / "summary.json", json.dumps(summary, indent=2))
    write_text_atomic(
        options.workdir / "report.html", render(replace(report, final_line=final_line, artifacts=artifacts))
    )
    print(
        "\nserve the model again: SYNTHNER_NER_API_AUTH_MODE=api_keys "
        f"SYNTHNER_NER_API_API_KEYS_FILE={options.workdir / 'ner-api' / 'api-keys'} "
        f"SYNTHNER_NER_API_MODEL_STORE={models_dir} SYNTHNER_NER_API_LISTEN_FOR_MODELS=false python -m synthner_ner_api"
    )
    print("\nartifacts:")
    for name, path in artifacts:
        print(f"  {name}: {path}")
    print(
        f"\n{counts.generated} notes generated, {counts.annotated} annotated ({counts.entities} entities); "
        f"strict F1 {f1:.4f}, partial F1 {gold_result.partial_micro.f1:.4f} on {gold_result.documents} gold documents"
    )
    return final_line
