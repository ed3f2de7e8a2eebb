"""Entry point of the ``synthner`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from tqdm.contrib.logging import logging_redirect_tqdm

from synthner import __version__
from synthner.commands import COMMAND_MODULES
from synthner.progress import wanted
from synthner_shared.documents import DocumentFormatError
from synthner_shared.offline import stay_offline


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthner",
        description="synthner: clinical NER models trained on synthetic notes. Run `synthner COMMAND --help`.",
    )
    parser.add_argument("--version", action="version", version=f"synthner {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details (never note text)")
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    add_to_every_command(parser)
    return parser


NO_PROGRESS_HELP = "no progress bars (they go to stderr, and only when it is a terminal)"


def add_to_every_command(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` after any (sub)command too: ``synthner demo --no-progress`` as well as
    ``synthner --no-progress demo``. SUPPRESS keeps a sub-parser from resetting what the main parser read."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                if not any("--no-progress" in a.option_strings for a in child._actions):
                    child.add_argument(
                        "--no-progress", action="store_true", default=argparse.SUPPRESS, help=NO_PROGRESS_HELP
                    )
                add_to_every_command(child)


def main(argv: list[str] | None = None) -> int:
    stay_offline()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:  # one INFO line per HTTP request (health polls, LLM calls) is noise; errors still show
        logging.getLogger("httpx").setLevel(logging.WARNING)
    args.show_progress = wanted(args.no_progress)
    try:
        if args.show_progress:
            with logging_redirect_tqdm():  # log lines go above the bars instead of through them
                return int(args.handler(args))
        return int(args.handler(args))
    except DocumentFormatError as exc:
        print(f"synthner: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing or unreadable file named on the command line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"synthner: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
