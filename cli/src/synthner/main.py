"""Entry point of the ``synthner`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from synthner import __version__
from synthner.commands import COMMAND_MODULES
from synthner_shared.documents import DocumentFormatError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthner",
        description="synthner: clinical NER models trained on synthetic notes. Run `synthner COMMAND --help`.",
    )
    parser.add_argument("--version", action="version", version=f"synthner {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details (never note text)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args))
    except DocumentFormatError as exc:
        print(f"synthner: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
