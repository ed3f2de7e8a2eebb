"""Trainings and adaptations as jobs (:mod:`synthner_trainer.jobs`): the service freezes and exports the dataset
before the job starts, a job that ends without a result fails its request with the reason, a stopping service keeps
the job's folder (the restarted one follows the same job), and an adapted generator is moved into the service's
generators folder. The launchers here are stand-ins; the real child process runs in the last test and in the
integration tier (test_training_jobs.py there)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synthner_shared.contracts import AdaptationRequested, TrainingRequested
from synthner_shared.documents import read_documents
from synthner_shared.testing import sample_annotated
from synthner_trainer.jobs import (
    EXIT_FAILED,
    JobFailedError,
    JobFolder,
    JobOutcome,
    JobStatus,
    OutOfProcessJobs,
    SubprocessLauncher,
    job_id,
    run_job,
)
from synthner_trainer.registry import ModelRegistry
from synthner_trainer.settings import TrainerSettings
from synthner_trainer.store import DatasetStore
from synthner_trainer.testing import adapted_event
from synthner_trainer.training import StopCheck, TrainingCancelled


class ScriptedLauncher:
    """Stands in for a child process or a Kubernetes Job: records the folder as the job would see it, optionally
    lets a document arrive meanwhile, writes an outcome, and ends as told."""

    def __init__(self, end: JobStatus, outcome: JobOutcome | None = None, store: DatasetStore | None = None) -> None:
        self.end = end
        self.outcome = outcome
        self.store = store
        self.folders: list[JobFolder] = []
        self.seen_documents: list[int] = []

    def run(self, folder: JobFolder, should_stop: StopCheck) -> JobStatus:
        self.folders.append(folder)
        if folder.dataset.is_file():
            self.seen_documents.append(len(list(read_documents(folder.dataset))))
        if self.store is not None:  # a document arrives while the job runs
            self.store.add(sample_annotated(seed=99, target_chars=300, spans=3))
        if self.outcome is not None:
            folder.write_outcome(self.outcome)
        return self.end


@pytest.fixture
def settings(tmp_path: Path) -> TrainerSettings:
    gold = tmp_path / "hospital" / "gold.jsonl"
    gold.parent.mkdir()
    gold.write_text("")
    return TrainerSettings(data_dir=tmp_path / "trainer", gold=gold, device="cpu")


@pytest.fixture
def store(settings: TrainerSettings) -> DatasetStore:
    settings.data_dir.mkdir(parents=True)
    store = DatasetStore(settings.store_path)
    for seed in range(3):
        store.add(sample_annotated(seed=seed, target_chars=300, spans=3))
    return store


def test_the_dataset_is_frozen_before_the_job_starts_and_a_failed_job_fails_its_request(
    settings: TrainerSettings, store: DatasetStore
) -> None:
    request = TrainingRequested(correlation_id="c-1", producer="tests")
    launcher = ScriptedLauncher(
        JobStatus("failed", "BackoffLimitExceeded: the pod failed"),
        JobOutcome(status="failed", error="RuntimeError: CUDA out of memory"),
        store,
    )
    jobs = OutOfProcessJobs(launcher, settings.jobs_path)
    with pytest.raises(JobFailedError, match="BackoffLimitExceeded") as raised:
        jobs.train(request, store, ModelRegistry(settings.models_dir), settings, lambda: False)
    assert "CUDA out of memory" in str(raised.value)
    (folder,) = launcher.folders
    assert folder.id == job_id(request)
    assert launcher.seen_documents == [3]  # the frozen version, not the document that arrived meanwhile
    assert store.count() == 4
    (version,) = store.versions()
    assert version.document_count == 3
    assert not folder.path.exists()  # nothing left behind


def test_the_job_folder_carries_the_request_the_settings_and_the_gold_copy_but_not_the_device(
    settings: TrainerSettings, store: DatasetStore
) -> None:
    request = TrainingRequested(correlation_id="c-2", producer="tests")
    launcher = ScriptedLauncher(JobStatus("cancelled", "the service is stopping"))
    jobs = OutOfProcessJobs(launcher, settings.jobs_path)
    with pytest.raises(TrainingCancelled):
        jobs.train(request, store, ModelRegistry(settings.models_dir), settings, lambda: True)
    (folder,) = launcher.folders
    spec = folder.spec()
    assert spec.training == request
    assert spec.manifest is not None
    assert spec.manifest.document_count == 3
    assert spec.gold == "gold/hospital/gold.jsonl"  # named in metrics as the service names its gold file
    assert (folder.path / spec.gold).is_file()
    assert "device" not in spec.settings  # the job's own environment says where it runs
    assert spec.settings["gate_metric"] == settings.gate_metric
    # A stopping service keeps the folder: after the restart the same job is followed, the dataset not frozen again.
    again = ScriptedLauncher(JobStatus("deleted", "the Job was deleted"))
    with pytest.raises(JobFailedError, match="deleted"):
        OutOfProcessJobs(again, settings.jobs_path).train(
            request, store, ModelRegistry(settings.models_dir), settings, lambda: False
        )
    assert again.folders == [folder]
    assert len(store.versions()) == 1


def test_an_adapted_generator_is_moved_into_the_generators_folder_with_its_paths(
    settings: TrainerSettings, tmp_path: Path
) -> None:
    notes = settings.adaptation_notes_dir / "ward" / "real.jsonl"
    notes.parent.mkdir(parents=True)
    notes.write_text('{"id": "n1", "text": "a note"}\n')
    request = AdaptationRequested(correlation_id="a-1", producer="tests", notes="ward/real.jsonl", name="gen-1")
    folder = JobFolder(settings.jobs_path / job_id(request))
    out = folder.path / "generators" / "gen-1"

    class Adapting(ScriptedLauncher):
        def run(self, folder: JobFolder, should_stop: StopCheck) -> JobStatus:
            assert (folder.notes_dir / "ward" / "real.jsonl").read_text() == notes.read_text()
            (out / "model").mkdir(parents=True)
            (out / "model" / "config.json").write_text("{}")
            self.outcome = JobOutcome(status="done", adapted=adapted_event(request, out))
            return super().run(folder, should_stop)

    event = OutOfProcessJobs(Adapting(JobStatus("succeeded")), settings.jobs_path).adapt(
        request, settings, lambda: False
    )
    target = settings.generators_dir / "gen-1"
    assert event.artifact_uri == str(target)
    assert event.model_uri == str(target / "model")
    assert event.prefix_file_uri == str(target / "heldout_prefixes.jsonl")
    assert json.loads((target / "model" / "config.json").read_text()) == {}
    assert not folder.path.exists()


def test_an_adaptation_naming_a_file_outside_the_notes_folder_is_refused_before_any_copy(
    settings: TrainerSettings,
) -> None:
    request = AdaptationRequested(correlation_id="a-2", producer="tests", notes="../../etc/passwd")
    launcher = ScriptedLauncher(JobStatus("succeeded"))
    with pytest.raises(ValueError, match="outside"):
        OutOfProcessJobs(launcher, settings.jobs_path).adapt(request, settings, lambda: False)
    assert launcher.folders == []


def test_the_job_entry_point_reports_a_failure_in_its_outcome_and_exit_code(
    settings: TrainerSettings, store: DatasetStore, tmp_path: Path
) -> None:
    """The real one-shot process: a base model that is not there fails the job, with the reason in outcome.json."""
    request = TrainingRequested(correlation_id="c-3", producer="tests", base_model=str(tmp_path / "no-such-model"))
    recorded: list[JobOutcome | None] = []

    class Recording(SubprocessLauncher):
        def run(self, folder: JobFolder, should_stop: StopCheck) -> JobStatus:
            status = super().run(folder, should_stop)
            recorded.append(folder.outcome())
            return status

    with pytest.raises(JobFailedError, match=f"exited with code {EXIT_FAILED}"):
        OutOfProcessJobs(Recording(), settings.jobs_path).train(
            request, store, ModelRegistry(settings.models_dir), settings, lambda: False
        )
    (outcome,) = recorded
    assert outcome is not None
    assert outcome.status == "failed"
    assert outcome.error
    assert "no-such-model" in outcome.error


def test_a_job_folder_without_a_request_fails(tmp_path: Path) -> None:
    folder = JobFolder(tmp_path / "j")
    folder.path.mkdir()
    folder.spec_file.write_text(json.dumps({"settings": {"data_dir": str(tmp_path)}}))
    assert run_job(folder) == EXIT_FAILED
    outcome = folder.outcome()
    assert outcome is not None
    assert outcome.error
    assert "neither a training nor an adaptation" in outcome.error


def test_the_job_entry_point_without_its_folder_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "synthner_trainer.job", "--job", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "synthner-trainer-job: job.json not found in the job folder"
