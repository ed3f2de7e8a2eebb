"""``python -m synthner_trainer``: run the trainer service (settings from the environment) until SIGTERM."""

from __future__ import annotations

from synthner_shared.app import run_service
from synthner_shared.messaging import BrokerSettings
from synthner_trainer.app import CONFIGURATION_ERRORS, build
from synthner_trainer.settings import TrainerSettings


def main() -> int:
    return run_service(
        "synthner-trainer",
        lambda: (TrainerSettings(), BrokerSettings()),
        lambda read: build(*read),
        configuration_errors=CONFIGURATION_ERRORS,
    )


if __name__ == "__main__":
    raise SystemExit(main())
