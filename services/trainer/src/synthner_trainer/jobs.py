"""Trainings and adaptations as one-shot jobs outside the service: the job folder, the job's body, and the runner
the service uses in place of an in-process training.

The service stays the dataset store's and the model store's one writer. Before a job starts it freezes the dataset
version and writes a job folder (on a volume the job also mounts)::

    <jobs_dir>/<job id>/
        job.json        what to run: the request, the frozen dataset manifest, the service's settings
        dataset.jsonl   the frozen dataset version (documents arriving meanwhile do not change it)
        reviewed.jsonl  reviewed documents the gate scores on and training leaves out
        gold/...        copies of the gate's gold file and the dev gold file (their names as the service names them)
        notes/...       an adaptation's notes file
        staged/         the job's trained model folder, gated, not yet a version (written atomically)
        generators/     an adaptation's adapted generator
        outcome.json    the job's result, written last (:class:`JobOutcome`)

The job (:func:`run_job`, ``python -m synthner_trainer.job --job DIR``) reads only its folder and the published
models (for the gate's comparison), writes only ``staged``/``generators`` and ``outcome.json``, and exits with
:data:`EXIT_DONE`, :data:`EXIT_FAILED` or :data:`EXIT_CANCELLED`. The service learns the end from the launcher (a
child's exit code, a Kubernetes Job's conditions: a job killed for memory or its deadline writes nothing) and the
result from ``outcome.json``; it then registers the staged model itself (verify, rename, ``current.json``:
:func:`~synthner_trainer.pipeline.register_judged`) and announces it as an in-process training does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from synthner_shared.contracts import (
    AdaptationRequested,
    DatasetManifest,
    EvaluationResult,
    GeneratorAdapted,
    TrainingRequested,
)
from synthner_shared.documents import read_documents, write_documents
from synthner_shared.messaging.consumer import bounded_reason
from synthner_trainer.adaptation import resolve_notes_file, run_adaptation_request
from synthner_trainer.pipeline import (
    JudgedModel,
    TrainingOutcome,
    register_judged,
    request_model_and_config,
    reviewed_for_gate,
    train_and_judge,
)
from synthner_trainer.registry import GateDecision, ModelRegistry
from synthner_trainer.settings import TrainerSettings
from synthner_trainer.store import DatasetStore
from synthner_trainer.training import StopCheck, TrainingCancelled

log = logging.getLogger(__name__)

EXIT_DONE = 0
"""The job finished: a staged model (published, rejected or failed by the gate) or an adapted generator."""
EXIT_FAILED = 1
"""The job failed (bad input, an error while training); ``outcome.json`` says why."""
EXIT_CANCELLED = 3
"""The job was stopped (SIGTERM) before it finished; nothing was staged (2 is a configuration error)."""

JOB_SETTINGS_EXCLUDED = frozenset({"device", "health_port", "job_runner", "job_template", "job_poll_s"})
"""Settings a job takes from its own environment, not from the service's ``job.json``: the device above all (the
service runs on a CPU node, its jobs on a GPU node)."""


class JobSpec(BaseModel):
    """``job.json``: what one job runs, written by the service before the job starts."""

    training: TrainingRequested | None = None
    adaptation: AdaptationRequested | None = None
    manifest: DatasetManifest | None = None
    """The frozen dataset version (training)."""
    gold: str | None = None
    """The gate's gold file inside the job folder (its path relative to the folder)."""
    dev_gold: str | None = None
    notes: str | None = None
    """An adaptation's notes file inside the job folder's ``notes`` (the name the request gave)."""
    settings: dict[str, Any]
    """The service's settings (JSON), less :data:`JOB_SETTINGS_EXCLUDED`."""

    @property
    def kind(self) -> Literal["training", "adaptation"]:
        return "training" if self.training is not None else "adaptation"


class StagedModel(BaseModel):
    """A training job's staged model: what :func:`~synthner_trainer.pipeline.register_judged` needs besides it."""

    version: str
    gate: GateDecision
    metrics: list[EvaluationResult]
    labels: list[str]
    base_model: str


class JobOutcome(BaseModel):
    """``outcome.json``: written by the job, last."""

    status: Literal["done", "failed"]
    error: str | None = None
    """Why it failed: type and message of the error, bounded, never note text."""
    staged: StagedModel | None = None
    adapted: GeneratorAdapted | None = None


@dataclass(frozen=True)
class JobFolder:
    """The paths of one job folder."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def spec_file(self) -> Path:
        return self.path / "job.json"

    @property
    def dataset(self) -> Path:
        return self.path / "dataset.jsonl"

    @property
    def reviewed(self) -> Path:
        return self.path / "reviewed.jsonl"

    @property
    def notes_dir(self) -> Path:
        return self.path / "notes"

    @property
    def staged(self) -> Path:
        return self.path / "staged"

    @property
    def outcome_file(self) -> Path:
        return self.path / "outcome.json"

    def spec(self) -> JobSpec:
        return JobSpec.model_validate_json(self.spec_file.read_text(encoding="utf-8"))

    def outcome(self) -> JobOutcome | None:
        """The job's outcome, None where it wrote none (killed, deleted, out of time)."""
        if not self.outcome_file.is_file():
            return None
        return JobOutcome.model_validate_json(self.outcome_file.read_text(encoding="utf-8"))

    def write_outcome(self, outcome: JobOutcome) -> None:
        _write_atomically(self.outcome_file, outcome.model_dump_json(indent=2))


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def job_id(request: TrainingRequested | AdaptationRequested) -> str:
    """The job's name, from its request's message id: a DNS label, so also the Kubernetes Job's name, and the same
    after a restart (the service finds the job it started instead of starting another)."""
    kind = "adapt" if isinstance(request, AdaptationRequested) else "train"
    return f"synthner-{kind}-{request.message_id.hex[:24]}"


# --- the job (the one-shot process) -----------------------------------------------------------------------------


def job_settings(spec: JobSpec, folder: JobFolder) -> TrainerSettings:
    """The service's settings for this job, with its device from the job's own environment and the gold files read
    from the job folder."""
    values = dict(spec.settings)
    values["gold"] = str(folder.path / spec.gold) if spec.gold else None
    values["dev_gold"] = str(folder.path / spec.dev_gold) if spec.dev_gold else None
    return TrainerSettings(**values)


def run_job(folder: JobFolder, should_stop: StopCheck | None = None) -> int:
    """Run the job of ``folder`` and write its ``outcome.json``; returns the exit code (:data:`EXIT_DONE` ...)."""
    try:
        spec = folder.spec()
        settings = job_settings(spec, folder)
        if spec.training is not None:
            outcome = JobOutcome(status="done", staged=_train(spec, spec.training, folder, settings, should_stop))
        elif spec.adaptation is not None:
            outcome = JobOutcome(status="done", adapted=_adapt(spec.adaptation, folder, settings, should_stop))
        else:
            raise ValueError("job.json names neither a training nor an adaptation")
    except TrainingCancelled:
        log.info("job %s stopped before it finished", folder.id)
        return EXIT_CANCELLED
    except Exception as exc:  # noqa: BLE001 - every failure is reported in outcome.json and the exit code
        reason = bounded_reason(f"{type(exc).__name__}: {exc}", 2000)
        log.error("job %s failed: %s", folder.id, reason)
        folder.write_outcome(JobOutcome(status="failed", error=reason))
        return EXIT_FAILED
    folder.write_outcome(outcome)
    log.info("job %s done", folder.id)
    return EXIT_DONE


def _train(
    spec: JobSpec,
    request: TrainingRequested,
    folder: JobFolder,
    settings: TrainerSettings,
    should_stop: StopCheck | None,
) -> StagedModel:
    if spec.manifest is None:
        raise ValueError("a training job needs its frozen dataset manifest")
    if folder.staged.exists():  # a job started again after it had staged (the pod restarted): stage it afresh
        shutil.rmtree(folder.staged)
    base_model, config = request_model_and_config(request, settings)
    judged = train_and_judge(
        list(read_documents(folder.dataset)),
        manifest=spec.manifest,
        settings=settings,
        registry=ModelRegistry(settings.models_dir),  # read here: the current version the gate compares against
        config=config,
        base_model=base_model,
        should_stop=should_stop,
        reviewed=list(read_documents(folder.reviewed)),
    )
    tmp = Path(tempfile.mkdtemp(prefix=".staged.", dir=folder.path))
    try:
        judged.write(tmp)
        os.rename(tmp, folder.staged)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StagedModel(
        version=judged.name,
        gate=judged.gate,
        metrics=judged.metrics,
        labels=judged.labels,
        base_model=judged.base_model,
    )


def _adapt(
    request: AdaptationRequested, folder: JobFolder, settings: TrainerSettings, should_stop: StopCheck | None
) -> GeneratorAdapted:
    # The notes were copied into the job folder, and the adapted generator is written there (``generators``).
    local = settings.model_copy(update={"data_dir": folder.path, "notes_dir": folder.notes_dir})
    return run_adaptation_request(request, local, should_stop)


# --- the launchers: where a job runs ------------------------------------------------------------------------------

JobEnd = Literal["succeeded", "failed", "deadline_exceeded", "deleted", "cancelled"]


@dataclass(frozen=True)
class JobStatus:
    """How a launched job ended: ``cancelled`` when the service is stopping (the job's request runs again, or is
    found running, after the restart)."""

    end: JobEnd
    reason: str = ""


class JobLauncher(Protocol):
    """Runs the job of a folder somewhere and waits, in the calling (worker) thread, until it ends or ``should_stop``
    says the service is stopping."""

    def run(self, folder: JobFolder, should_stop: StopCheck) -> JobStatus: ...


class SubprocessLauncher:
    """The job as a one-shot child process of the service (``python -m synthner_trainer.job``), with the service's
    environment: compose's GPU profile and the tests. Stopped with SIGTERM when the service stops."""

    def __init__(self, python: str = sys.executable, poll_s: float = 0.2, stop_grace_s: float = 30.0) -> None:
        self.python = python
        self.poll_s = poll_s
        self.stop_grace_s = stop_grace_s

    def run(self, folder: JobFolder, should_stop: StopCheck) -> JobStatus:
        command = [self.python, "-m", "synthner_trainer.job", "--job", str(folder.path)]
        with subprocess.Popen(command) as child:  # our own interpreter and module, on a folder we wrote
            while True:
                try:
                    code = child.wait(timeout=self.poll_s)
                    break
                except subprocess.TimeoutExpired:
                    if should_stop():
                        child.terminate()
                        try:
                            child.wait(timeout=self.stop_grace_s)
                        except subprocess.TimeoutExpired:
                            child.kill()
                            child.wait()
                        return JobStatus("cancelled", "the service is stopping")
        if code == EXIT_DONE:
            return JobStatus("succeeded")
        if code == EXIT_CANCELLED:
            return JobStatus("cancelled", "the job was stopped")
        return JobStatus("failed", f"the job exited with code {code}")


class JobFailedError(RuntimeError):
    """A job ended without a result (failed, out of time, deleted); its request is marked failed with this reason."""


class OutOfProcessJobs:
    """The service's training and adaptation functions (:data:`~synthner_trainer.service.TrainFunction`,
    :data:`~synthner_trainer.service.AdaptFunction`) with the work done by a launched job: the service freezes
    and exports, the job trains, the service registers and announces."""

    def __init__(self, launcher: JobLauncher, jobs_dir: Path) -> None:
        self.launcher = launcher
        self.jobs_dir = jobs_dir

    # --- training ---------------------------------------------------------------------------------------------------

    def train(
        self,
        request: TrainingRequested,
        store: DatasetStore,
        registry: ModelRegistry,
        settings: TrainerSettings,
        should_stop: StopCheck,
    ) -> TrainingOutcome:
        folder = JobFolder(self.jobs_dir / job_id(request))
        if folder.spec_file.is_file():  # written before a restart: the job may still run (adopted by the launcher)
            log.info("training job %s was started before a restart; waiting for it", folder.id)
        else:
            self._write_training_folder(folder, request, store, settings)
        outcome = self._launch(folder, should_stop)
        if outcome.staged is None:
            raise JobFailedError(f"training job {folder.id} finished without a staged model")
        staged = outcome.staged
        spec = folder.spec()
        assert spec.manifest is not None
        judged = JudgedModel(
            staged.version, staged.gate, staged.metrics, staged.labels, staged.base_model, _move_into(folder.staged)
        )
        result = register_judged(
            judged, manifest=spec.manifest, registry=registry, correlation_id=request.correlation_id
        )
        shutil.rmtree(folder.path, ignore_errors=True)
        return result

    def _write_training_folder(
        self, folder: JobFolder, request: TrainingRequested, store: DatasetStore, settings: TrainerSettings
    ) -> None:
        manifest = store.create_version(request.dataset, min_entities=settings.min_entities)  # before the job starts
        tmp = self._new_folder(folder)
        target = JobFolder(tmp)
        store.export(manifest.version, target.dataset)
        write_documents(target.reviewed, reviewed_for_gate(store, settings))
        gold = _copy_gold(settings.gold, tmp / "gold") if settings.gold is not None else None
        dev_gold = _copy_gold(settings.dev_gold, tmp / "dev_gold") if settings.dev_gold is not None else None
        spec = JobSpec(
            training=request, manifest=manifest, gold=gold, dev_gold=dev_gold, settings=_settings_for_job(settings)
        )
        self._finish_folder(tmp, folder, spec)
        log.info("training job %s: dataset version %s frozen and exported", folder.id, manifest.version)

    # --- adaptation -------------------------------------------------------------------------------------------------

    def adapt(
        self, request: AdaptationRequested, settings: TrainerSettings, should_stop: StopCheck
    ) -> GeneratorAdapted:
        name = request.name or f"adapted-{request.message_id.hex[:12]}"
        if (settings.generators_dir / name).exists():  # announced again after a redelivery: nothing to run
            return run_adaptation_request(request, settings, should_stop)
        folder = JobFolder(self.jobs_dir / job_id(request))
        if not folder.spec_file.is_file():
            notes = resolve_notes_file(settings.adaptation_notes_dir, request.notes)  # refused before any copy
            tmp = self._new_folder(folder)
            copy = JobFolder(tmp).notes_dir / request.notes
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notes, copy)
            self._finish_folder(tmp, folder, JobSpec(adaptation=request, settings=_settings_for_job(settings)))
        outcome = self._launch(folder, should_stop)
        if outcome.adapted is None:
            raise JobFailedError(f"adaptation job {folder.id} finished without an adapted generator")
        source = Path(outcome.adapted.artifact_uri)
        target = settings.generators_dir / source.name
        settings.generators_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{source.name}.", dir=settings.generators_dir))
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        os.rename(tmp, target)
        shutil.rmtree(folder.path, ignore_errors=True)
        return _moved(outcome.adapted, source, target)

    # --- shared -----------------------------------------------------------------------------------------------------

    def _new_folder(self, folder: JobFolder) -> Path:
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        if folder.path.exists():  # a folder without job.json: a crash while writing it
            shutil.rmtree(folder.path)
        return Path(tempfile.mkdtemp(prefix=f".{folder.id}.", dir=self.jobs_dir))

    @staticmethod
    def _finish_folder(tmp: Path, folder: JobFolder, spec: JobSpec) -> None:
        """Write ``job.json`` last and move the folder into place: a visible job folder is complete."""
        _write_atomically(tmp / "job.json", spec.model_dump_json(indent=2))
        tmp.chmod(0o770)  # the job (same user and group) writes its staged model here
        os.rename(tmp, folder.path)

    def _launch(self, folder: JobFolder, should_stop: StopCheck) -> JobOutcome:
        status = self.launcher.run(folder, should_stop)
        if status.end == "cancelled":
            raise TrainingCancelled(f"job {folder.id}: {status.reason}")
        outcome = folder.outcome()
        if status.end != "succeeded" or outcome is None or outcome.status != "done":
            why = outcome.error if outcome is not None and outcome.error else "no outcome written"
            shutil.rmtree(folder.path, ignore_errors=True)
            raise JobFailedError(f"job {folder.id} {status.end.replace('_', ' ')}: {status.reason or why}; {why}")
        return outcome


def _settings_for_job(settings: TrainerSettings) -> dict[str, Any]:
    values: dict[str, Any] = json.loads(settings.model_dump_json(exclude=set(JOB_SETTINGS_EXCLUDED)))
    values.pop("gold", None)
    values.pop("dev_gold", None)
    return values


def _copy_gold(source: Path, into: Path) -> str:
    """Copy a gold file as ``<into>/<its folder's name>/<its name>`` (so metrics name it as the service does);
    returns its path relative to the job folder."""
    target = into / source.parent.name / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return str(target.relative_to(into.parent))


def _move_into(staged: Path) -> Callable[[Path], None]:
    """The registry's ``write`` for a staged model: move its files into the registry's staging folder (a rename
    where both are on one volume, else a copy)."""

    def write(folder: Path) -> None:
        for entry in sorted(staged.iterdir()):
            shutil.move(str(entry), str(folder / entry.name))

    return write


def _moved(event: GeneratorAdapted, source: Path, target: Path) -> GeneratorAdapted:
    """The event with every path under ``source`` moved under ``target``."""

    def move(uri: str | None) -> str | None:
        if uri is None:
            return None
        path = Path(uri)
        return str(target / path.relative_to(source)) if path.is_relative_to(source) else uri

    fields: Sequence[str] = ("artifact_uri", "model_uri", "adapter_uri", "leak_reference_uri", "prefix_file_uri")
    return event.model_copy(update={name: move(getattr(event, name)) for name in fields})
