"""``synthner serve SERVICE``: run one service (or the local LLM) in the foreground, as its container would."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import sys

MODULES = {
    "generator": ("synthner_generator", ["generator"]),
    "tracker": ("synthner_generator", ["tracker"]),
    "annotator": ("synthner_annotator", []),
    "trainer": ("synthner_trainer", []),
    "ner-api": ("synthner_ner_api", []),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a service (generator, tracker, annotator, trainer, ner-api) or the local LLM in the foreground",
        description=(
            "Run one service locally, exactly as its container does (`python -m synthner_<service>`), with its\n"
            "settings from the environment (SYNTHNER_<SERVICE>_*, AMQP_URL); stop it with Ctrl-C or SIGTERM.\n"
            "`llm` runs the embedded llama.cpp server with SmolLM2 on 127.0.0.1 and prints its base URL.\n\n"
            "examples:\n"
            "  AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ synthner serve generator\n"
            "  synthner serve llm --port 8080"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("service", choices=[*MODULES, "llm"])
    parser.add_argument("--port", type=int, help="llm only: port on 127.0.0.1 (default: a free one)")
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    if args.service == "llm":
        return serve_llm(args.port)
    if args.port is not None:
        print("synthner serve: --port is for `llm`; services read their port from their settings", file=sys.stderr)
        return 2
    module, extra = MODULES[args.service]
    if importlib.util.find_spec(module) is None:
        print(f"synthner serve: {module} is not installed: run `make install`", file=sys.stderr)
        return 2
    sys.stdout.flush()
    # The service replaces this process, so signals reach it directly and its exit code is ours.
    os.execv(sys.executable, [sys.executable, "-m", module, *extra])  # noqa: S606 - our own interpreter and module


def serve_llm(port: int | None) -> int:
    from synthner_shared.local_llm import LocalLLMError, local_llm

    async def serve() -> None:
        stop = asyncio.Event()
        # SIGTERM (a supervisor, `kill`) must stop the llama.cpp server too, as Ctrl-C does, not orphan it.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with local_llm(port=port) as llm:
            print(f"local LLM ready: {llm.base_url} (model {llm.model}); Ctrl-C stops it", flush=True)
            await stop.wait()

    try:
        asyncio.run(serve())
    except LocalLLMError as exc:
        print(f"synthner serve: {exc}", file=sys.stderr)
        return 2
    return 0
