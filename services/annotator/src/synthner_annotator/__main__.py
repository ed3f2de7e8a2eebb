"""``python -m synthner_annotator``: run the annotator service (settings from the environment) until SIGTERM."""

from __future__ import annotations

from synthner_annotator.app import CONFIGURATION_ERRORS, build
from synthner_annotator.settings import AnnotatorSettings
from synthner_shared.app import run_service
from synthner_shared.messaging import BrokerSettings


def main() -> int:
    return run_service(
        "synthner-annotator",
        lambda: (AnnotatorSettings(), BrokerSettings()),  # fields from the environment (and the config file)
        lambda read: build(*read),
        configuration_errors=CONFIGURATION_ERRORS,
    )


if __name__ == "__main__":
    raise SystemExit(main())
