"""``python -m synthner_ner_api``: serve the NER API with settings from the environment until SIGTERM."""

from __future__ import annotations

from synthner_ner_api.app import CONFIGURATION_ERRORS, build, settings_from_environment
from synthner_shared.app import run_service


def main() -> int:
    return run_service(
        "synthner-ner-api",
        settings_from_environment,
        lambda read: build(*read),
        configuration_errors=CONFIGURATION_ERRORS,
    )


if __name__ == "__main__":
    raise SystemExit(main())
