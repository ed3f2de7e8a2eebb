"""``python -m synthner_generator [generator|tracker]``: run the generator service (default) or the job tracker."""

from __future__ import annotations

import argparse

from synthner_generator.app import CONFIGURATION_ERRORS, ROLES, Role, build
from synthner_generator.settings import GeneratorSettings
from synthner_shared.app import run_service
from synthner_shared.messaging import BrokerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthner_generator", description=__doc__)
    parser.add_argument("role", nargs="?", choices=ROLES, default="generator")
    role: Role = parser.parse_args(argv).role
    return run_service(
        f"synthner-{role}",
        lambda: (GeneratorSettings(), BrokerSettings()),
        lambda read: build(*read, role=role),
        configuration_errors=CONFIGURATION_ERRORS,
    )


if __name__ == "__main__":
    raise SystemExit(main())
