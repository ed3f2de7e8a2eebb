"""``python -m synthner_generator [generator|tracker]``: run the generator service (default) or the job tracker."""

from __future__ import annotations

import argparse
import asyncio
import logging

from synthner_generator.service import run
from synthner_generator.settings import GeneratorSettings
from synthner_shared.messaging import BrokerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthner_generator", description=__doc__)
    parser.add_argument("role", nargs="?", choices=("generator", "tracker"), default="generator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):  # one INFO line per LLM request is noise; errors still show
        logging.getLogger(noisy).setLevel(logging.WARNING)
    finished = asyncio.run(run(args.role, BrokerSettings(), GeneratorSettings()))
    return 0 if finished else 1


if __name__ == "__main__":
    raise SystemExit(main())
