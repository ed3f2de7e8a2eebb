"""One training run end to end, free of transport: dataset -> fine-tune -> evaluate -> gate -> model version.

The service calls :func:`run_training_request` in a worker thread and publishes the returned message; the CLI calls
:func:`train_to_folder`. Both validate everything (:func:`synthner_trainer.training.prepare`) before weights load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from synthner_shared.contracts import DatasetManifest, EvaluationResult, ModelPublished, TrainingRequested
from synthner_shared.documents import Document, read_documents
from synthner_shared.evaluation import evaluate_spans
from synthner_shared.ner.onnx import export_onnx
from synthner_shared.ner.predictor import SpanPredictor
from synthner_trainer.artifacts import verify_shipped_onnx, write_folder_atomically, write_metadata
from synthner_trainer.base_model import default_base_model
from synthner_trainer.registry import GateDecision, ModelRegistry, ModelVersion, decide, new_version_name
from synthner_trainer.review.store import ReviewStore
from synthner_trainer.settings import TrainerSettings, TrainingConfig
from synthner_trainer.store import DatasetStore, manifest_for
from synthner_trainer.training import (
    ProgressCallback,
    StopCheck,
    TrainingResult,
    fine_tune,
    log_progress,
    prepare,
)

log = logging.getLogger(__name__)

PRODUCER = "trainer"


@dataclass(frozen=True)
class GoldSet:
    name: str
    documents: list[Document]

    @classmethod
    def read(cls, path: Path) -> GoldSet:
        return cls(cls.name_of(path), list(read_documents(path)))

    @staticmethod
    def name_of(path: Path) -> str:
        """How metrics name a gold file: its folder and file name, never the machine's path."""
        return f"gold:{path.parent.name}/{path.name}"


def with_reviewed(gold: GoldSet | None, reviewed: Sequence[Document]) -> GoldSet | None:
    """The gate's gold set plus the human-reviewed documents (a reviewed note already in the gold file counts once,
    as reviewed)."""
    if not reviewed:
        return gold
    kept = without_reviewed(gold.documents, reviewed) if gold is not None else []
    name = f"{gold.name}+reviewed" if gold is not None else "reviewed"
    return GoldSet(name, [*kept, *reviewed])


def without_reviewed(documents: Sequence[Document], reviewed: Sequence[Document]) -> list[Document]:
    """The training documents without the reviewed notes (by note id and by text): the gate scores on those."""
    ids, texts = {d.id for d in reviewed}, {d.text for d in reviewed}
    return [d for d in documents if d.id not in ids and d.text not in texts]


def reviewed_for_gate(store: DatasetStore, settings: TrainerSettings) -> list[Document]:
    """The reviewed documents the gate adds to its gold set: all of them with ``review_gold``, else none."""
    if not settings.review_gold:
        return []
    with ReviewStore(store) as reviews:
        return reviews.gold()


def gate_inputs(
    documents: Sequence[Document], settings: TrainerSettings, reviewed: Sequence[Document]
) -> tuple[list[Document], GoldSet | None]:
    """What a training learns from and what its gate scores on: the configured gold file plus ``reviewed``, and the
    dataset without the reviewed notes."""
    gold = with_reviewed(GoldSet.read(settings.gold) if settings.gold is not None else None, reviewed)
    kept = without_reviewed(documents, reviewed)
    if len(kept) < len(documents):
        log.info("%d reviewed documents join the gate's gold set, not training", len(documents) - len(kept))
    return kept, gold


@dataclass(frozen=True)
class TrainingOutcome:
    version: ModelVersion
    metrics: list[EvaluationResult]
    published: ModelPublished | None


def gate_score(result: EvaluationResult, metric: str) -> float:
    return result.partial_micro.f1 if metric == "partial" else result.strict_micro.f1


def score_current_model(registry: ModelRegistry, gold: GoldSet, metric: str) -> tuple[str | None, float | None]:
    """The current published model's gold score, measured now (the gold set may have changed since it was trained)."""
    current = registry.current()
    if current is None:
        return None, None
    predictor = SpanPredictor.load(current.path)
    result = evaluate_spans(gold.documents, predictor.predict_documents(gold.documents), gold.name)
    return current.name, gate_score(result, metric)


def evaluate_result(
    result: TrainingResult, gold: GoldSet | None, dev_name: str = "synthetic-dev"
) -> list[EvaluationResult]:
    metrics = [result.dev_result.model_copy(update={"dataset": dev_name})]
    if gold is not None:
        predicted = result.predictor().predict_documents(gold.documents)
        metrics.append(evaluate_spans(gold.documents, predicted, gold.name))
    return metrics


def tightest(*bounds: float | None) -> float | None:
    """The smallest of the time bounds that are set (None: none is)."""
    return min((bound for bound in bounds if bound is not None), default=None)


def train_and_judge(
    documents: Sequence[Document],
    *,
    manifest: DatasetManifest,
    settings: TrainerSettings,
    registry: ModelRegistry,
    config: TrainingConfig,
    base_model: Path,
    progress: ProgressCallback = log_progress,
    should_stop: StopCheck | None = None,
    reviewed: Sequence[Document] = (),
) -> JudgedModel:
    """Train on ``documents`` and gate on the configured gold set (with the ``reviewed`` documents, which are never
    trained on) against the registry's current version; nothing is written yet."""
    documents, gold = gate_inputs(documents, settings, reviewed)
    dev = GoldSet.read(settings.dev_gold).documents if settings.dev_gold is not None else None
    plan = prepare(documents, dev, base_model, config, labels=settings.labels, dev_fraction=settings.dev_fraction)
    log.info("training on %d documents (%d dev) from %s", len(plan.train), len(plan.dev), manifest.version)
    result = fine_tune(
        plan,
        device=settings.device,
        patience=settings.patience,
        progress=progress,
        should_stop=should_stop,
        max_seconds=tightest(settings.max_train_seconds, config.max_seconds),
    )
    return judge(result, manifest=manifest, settings=settings, registry=registry, gold=gold)


def train_and_register(
    documents: Sequence[Document],
    *,
    manifest: DatasetManifest,
    settings: TrainerSettings,
    registry: ModelRegistry,
    config: TrainingConfig,
    base_model: Path,
    correlation_id: str,
    progress: ProgressCallback = log_progress,
    should_stop: StopCheck | None = None,
    reviewed: Sequence[Document] = (),
) -> TrainingOutcome:
    """Train on ``documents``, gate on the configured gold set (with the ``reviewed`` documents, which are never
    trained on), and add the version (published or rejected)."""
    judged = train_and_judge(
        documents,
        manifest=manifest,
        settings=settings,
        registry=registry,
        config=config,
        base_model=base_model,
        progress=progress,
        should_stop=should_stop,
        reviewed=reviewed,
    )
    return register_judged(judged, manifest=manifest, registry=registry, correlation_id=correlation_id)


SMOKE_TEXT = "Seen today for a follow-up; no new complaints. Plan: continue the current treatment."
"""What a freshly written model predicts on once before it may be published (any text would do; no real note)."""


def loads_and_predicts(folder: Path) -> None:
    """The check a written version passes before it becomes current: the shared predictor loads its torch weights
    from disk and annotates a note, and the shipped ONNX, loaded as the NER API loads it, predicts the same."""
    predictor = SpanPredictor.load(folder, device="cpu")
    predictor.predict_documents([Document(id="smoke", text=SMOKE_TEXT)])
    verify_shipped_onnx(folder, predictor, SMOKE_TEXT)


@dataclass(frozen=True)
class JudgedModel:
    """A trained model scored and gated, not yet a version: :func:`register_judged` adds it to the registry (in the
    service), or :func:`synthner_trainer.jobs` writes it to a job folder first (a training job out of process)."""

    name: str
    gate: GateDecision
    metrics: list[EvaluationResult]
    labels: list[str]
    base_model: str
    write: Callable[[Path], None]
    """Writes the model folder (weights, shipped ONNX, metadata) into the folder it is given."""


def judge(
    result: TrainingResult,
    *,
    manifest: DatasetManifest,
    settings: TrainerSettings,
    registry: ModelRegistry,
    gold: GoldSet | None,
) -> JudgedModel:
    """Score a trained model and gate it against the registry's current version on the gold set."""
    config, base_model = result.config, result.base_model
    dev_name = GoldSet.name_of(settings.dev_gold) if settings.dev_gold is not None else "synthetic-dev"
    metrics = evaluate_result(result, gold, dev_name)
    candidate = gate_score(metrics[-1], settings.gate_metric) if gold is not None else None
    current_name, current_score = (None, None)
    if gold is not None:
        current_name, current_score = score_current_model(registry, gold, settings.gate_metric)
    gate = decide(
        candidate,
        current_score,
        settings.gate_tolerance,
        metric=f"{settings.gate_metric} micro F1 on {gold.name}" if gold else "none",
        current_version=current_name,
    )
    name = new_version_name(manifest.content_hash)
    # An ungated version says so where its numbers are (production needs the operator's explicit consent for it).
    ungated = {"published_without_gold": True, "environment": settings.environment} if gold is None else {}

    def write(folder: Path) -> None:
        result.save(folder)
        export_onnx(result.model, folder, choose_int8_on=result.dev)  # what the NER API serves, without torch
        write_metadata(
            folder,
            version=name,
            base_model=str(base_model),
            labels=result.labels,
            manifest=manifest,
            metrics=metrics,
            config=config,
            gate_reason=gate.reason,
            extra={
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "seconds": round(result.seconds),
                **ungated,
            },
        )

    return JudgedModel(name, gate, metrics, list(result.labels), str(base_model), write)


def register_judged(
    judged: JudgedModel, *, manifest: DatasetManifest, registry: ModelRegistry, correlation_id: str
) -> TrainingOutcome:
    """Add a judged model as a version (verified by loading it back before it may become current) and describe a
    published, current one as ``ModelPublished``: the model store's one writer (the service) calls this."""
    name = judged.name
    version = registry.add(name, judged.write, judged.gate, verify=loads_and_predicts)
    log.info("model version %s %s (%s)", name, version.status, version.gate.reason)
    if version.held_by is not None:
        pin = version.held_by
        log.warning(
            "model version %s is published but not current or announced: %s rolled the store back to %s at %s;"
            " release the pin to serve newer versions",
            name,
            pin.by,
            pin.version,
            pin.at.isoformat(),
        )
    published = None
    if version.status == "published" and version.held_by is None:
        published = ModelPublished(
            correlation_id=correlation_id,
            producer=PRODUCER,
            model_version=name,
            artifact_uri=str(version.path.resolve()),
            labels=judged.labels,
            base_model=judged.base_model,
            metrics=judged.metrics,
            dataset=manifest,
        )
    return TrainingOutcome(version, judged.metrics, published)


def gate_and_register(
    result: TrainingResult,
    *,
    manifest: DatasetManifest,
    settings: TrainerSettings,
    registry: ModelRegistry,
    gold: GoldSet | None,
    correlation_id: str,
) -> TrainingOutcome:
    """Score a trained model, gate it against the current version on the gold set, add it as a version."""
    judged = judge(result, manifest=manifest, settings=settings, registry=registry, gold=gold)
    return register_judged(judged, manifest=manifest, registry=registry, correlation_id=correlation_id)


def request_model_and_config(request: TrainingRequested, settings: TrainerSettings) -> tuple[Path, TrainingConfig]:
    """The base model and the resolved hyper-parameters a training request asks for."""
    base_model = Path(request.base_model) if request.base_model else settings.base_model or default_base_model()
    return base_model, settings.training.override(request.hyperparameters)


def run_training_request(
    request: TrainingRequested,
    store: DatasetStore,
    registry: ModelRegistry,
    settings: TrainerSettings,
    should_stop: StopCheck | None = None,
    *,
    progress: ProgressCallback = log_progress,
) -> TrainingOutcome:
    """Serve a ``TrainingRequested``: freeze (or reuse) a dataset version, train, gate, register. ``progress`` sees
    every training update (the CLI draws its bar and learning curve from them)."""
    base_model, config = request_model_and_config(request, settings)
    manifest = store.create_version(request.dataset, min_entities=settings.min_entities)
    documents = store.documents(manifest.version)
    return train_and_register(
        documents,
        manifest=manifest,
        settings=settings,
        registry=registry,
        config=config,
        base_model=base_model,
        correlation_id=request.correlation_id,
        progress=progress,
        should_stop=should_stop,
        reviewed=reviewed_for_gate(store, settings),
    )


def train_to_folder(
    train: Sequence[Document],
    out: Path,
    base_model: Path,
    config: TrainingConfig,
    *,
    dev: Sequence[Document] | None = None,
    gold: GoldSet | None = None,
    labels: Sequence[str] | None = None,
    device: str = "auto",
    patience: int = 2,
    progress: ProgressCallback = log_progress,
    max_seconds: float | None = None,
) -> tuple[TrainingResult, list[EvaluationResult]]:
    """The CLI's training: documents from files into one model folder at ``out`` (written atomically)."""
    plan = prepare(train, dev, base_model, config, labels=labels)
    budget = tightest(max_seconds, config.max_seconds)
    result = fine_tune(plan, device=device, patience=patience, progress=progress, max_seconds=budget)
    return result, write_model_folder(result, out, manifest_for("files", plan.train, ["files"]), gold)


def write_model_folder(
    result: TrainingResult, out: Path, manifest: DatasetManifest, gold: GoldSet | None
) -> list[EvaluationResult]:
    """Score a trained model and write it with its metadata to ``out`` (atomically); returns the metrics."""
    config, base_model = result.config, result.base_model
    metrics = evaluate_result(result, gold)
    metrics[0] = metrics[0].model_copy(update={"dataset": "dev"})

    def write(folder: Path) -> None:
        result.save(folder)
        export_onnx(result.model, folder, choose_int8_on=result.dev)  # what the NER API serves, without torch
        write_metadata(
            folder,
            version=out.name,
            base_model=str(base_model),
            labels=result.labels,
            manifest=manifest,
            metrics=metrics,
            config=config,
        )

    write_folder_atomically(out, write)
    return metrics
