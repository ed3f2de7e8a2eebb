"""``python -m synthner_trainer.job --job DIR``: run one training or adaptation job from its job folder and exit.

The trainer service writes the folder (the frozen dataset version, the request, its settings:
:mod:`synthner_trainer.jobs`) and starts this as a child process or a Kubernetes Job on a GPU node, from the same
image. The job writes its staged model (or adapted generator) and ``outcome.json`` into the folder; the exit code is
:data:`~synthner_trainer.jobs.EXIT_DONE` (0), :data:`~synthner_trainer.jobs.EXIT_FAILED` (1),
:data:`~synthner_trainer.jobs.EXIT_CANCELLED` (3, stopped by SIGTERM) or 2 (bad arguments or settings). Its device
comes from its own environment (``SYNTHNER_TRAINER_DEVICE``), not from the service's settings.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from synthner_shared.app import LogSettings
from synthner_shared.contracts import describe_validation_error
from synthner_shared.logs import configure_logging
from synthner_shared.offline import stay_offline
from synthner_trainer.jobs import JobFolder, run_job


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthner_trainer.job", description=__doc__.split("\n")[0])
    parser.add_argument("--job", type=Path, required=True, help="the job folder the trainer service wrote")
    args = parser.parse_args(argv)
    folder = JobFolder(args.job)
    if not folder.spec_file.is_file():
        print(f"synthner-trainer-job: {folder.spec_file.name} not found in the job folder", file=sys.stderr)
        return 2
    stay_offline()
    try:
        logs = LogSettings()
    except ValidationError as exc:
        print(f"synthner-trainer-job: invalid settings: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    configure_logging(logs.level, logs.format)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()  # the training stops at its next step; nothing is staged

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run_job(folder, stop.is_set)


if __name__ == "__main__":
    raise SystemExit(main())
