"""The trainer's composition root: :func:`build` puts the service together from its settings.

``python -m synthner_trainer`` runs what it builds through :func:`synthner_shared.app.run_service` (logging, exit
codes, probes, SIGTERM).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from functools import partial

from synthner_shared.app import BrokerApp, probe_address
from synthner_shared.messaging import BrokerSettings
from synthner_shared.ner.predictor import DeviceUnavailableError
from synthner_trainer.adaptation import run_adaptation_request
from synthner_trainer.jobs import JobLauncher, OutOfProcessJobs, SubprocessLauncher
from synthner_trainer.kubernetes import ClusterAccess, KubernetesError, KubernetesJobs, KubernetesLauncher
from synthner_trainer.pipeline import run_training_request
from synthner_trainer.service import AdaptFunction, TrainerService, TrainFunction
from synthner_trainer.settings import TrainerSettings
from synthner_trainer.training import ProgressCallback

CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (DeviceUnavailableError, KubernetesError)
"""Errors of building that mean the configuration is wrong (exit code 2): a CUDA device on a node without one, the
kubernetes job runner outside a cluster or without a service-account token."""


class TrainerApp(BrokerApp):
    """The trainer as built: :attr:`trainer` (its store, registry and outcomes) bound to the broker."""

    def __init__(self, trainer: TrainerService, health_address: tuple[str, int] | None) -> None:
        resources = AsyncExitStack()
        resources.callback(trainer.close)
        super().__init__(
            trainer.service, resources, health_address, run=lambda: trainer.run(install_signal_handlers=False)
        )
        self.trainer = trainer


def launcher(settings: TrainerSettings) -> JobLauncher:
    """Where the service's jobs run (``job_runner``): a child process, or a Kubernetes Job (in-cluster access)."""
    if settings.job_runner == "kubernetes":
        jobs = KubernetesJobs(ClusterAccess.in_cluster())
        return KubernetesLauncher(jobs, settings.job_template, settings.job_poll_s)
    return SubprocessLauncher()


async def build(
    settings: TrainerSettings,
    broker: BrokerSettings,
    train: TrainFunction | None = None,
    adapt: AdaptFunction | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> TrainerApp:
    """The trainer bound to its queue, started: its device checked, its dataset store and model registry open
    (:meth:`TrainerService.start`); ``aclose`` closes the store. ``train`` (:func:`run_training_request` unless given)
    and ``adapt`` are fakes in tests. ``progress`` sees every update of the default ``train``'s trainings (the CLI
    draws its bar and learning curve from them); they are logged without it."""
    if train is None and settings.job_runner != "in_process":
        if progress is not None:
            raise ValueError("progress is reported by in-process trainings only (job_runner=in_process)")
        jobs = OutOfProcessJobs(launcher(settings), settings.jobs_path)
        train, adapt = jobs.train, adapt or jobs.adapt
    if train is None:
        train = run_training_request if progress is None else partial(run_training_request, progress=progress)
    elif progress is not None:
        raise ValueError("progress is reported by the default training only: pass train or progress, not both")
    if adapt is None:
        adapt = run_adaptation_request
    trainer = TrainerService(settings, broker, train, adapt)
    trainer.start()
    return TrainerApp(trainer, probe_address(settings.health_port))
