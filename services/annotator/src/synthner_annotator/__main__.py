"""``python -m synthner_annotator``: run the annotator service (settings from the environment)."""

from __future__ import annotations

import asyncio
import logging
import sys

from pydantic import ValidationError

from synthner_annotator.errors import ConfigurationError
from synthner_annotator.service import run
from synthner_annotator.settings import AnnotatorSettings
from synthner_shared.contracts import describe_validation_error
from synthner_shared.messaging import BrokerSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = AnnotatorSettings()  # fields come from the environment (and the config file)
        broker = BrokerSettings()
    except ValidationError as exc:
        print(f"synthner-annotator: invalid settings: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    try:
        finished = asyncio.run(run(settings, broker))
    except ConfigurationError as exc:
        print(f"synthner-annotator: {exc}", file=sys.stderr)
        return 2
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
