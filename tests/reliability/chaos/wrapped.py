"""The chaos run's entry point for a stage: ``python -m tests.reliability.chaos.wrapped STAGE [--latency S]
[--fault drop|raise]``.

It runs the stage's production composition root (``synthner_<stage>.app.build``) exactly as ``python -m
synthner_<stage>`` does (:func:`synthner_shared.app.run_service`: settings, logging, probes, SIGTERM, exit codes), with
each consumer's handler wrapped so that it

- records every handling (:class:`~tests.reliability.chaos.records.Recorder`: ids only) in the folder named by
  ``SYNTHNER_CHAOS_RECORDS``;
- optionally takes ``--latency`` seconds first (the chaos run's annotators are lexicon annotators, which answer in
  microseconds; an LLM annotator takes seconds, and a kill must be able to find notes in flight);
- optionally carries a planted fault, the run's self-test (never a switch of the production code): ``drop`` handles
  the first of every 20 notes this process handles and then drops its outputs (the runner acks the note, nothing is
  published: 5 % of the notes lost after acking); ``raise`` raises on the 20 % of notes whose id hashes to 0 mod 5 (on
  every delivery of them, so they exhaust their retries).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from synthner_shared.app import BrokerApp, ServiceApp, run_service
from synthner_shared.contracts import Envelope
from synthner_shared.messaging import BrokerSettings, Consumer, Service
from tests.reliability.chaos.records import Recorder

Fault = Literal["drop", "raise"]
FAULTS: tuple[Fault, ...] = ("drop", "raise")
STAGES = ("generator", "annotator", "trainer")
DROP_EVERY = 20
RAISE_ONE_IN = 5


class PlantedFault(RuntimeError):
    """The ``raise`` fault: an unexpected error of the handler."""


def raises_on(message: Envelope) -> bool:
    """The ``raise`` fault's choice: the same messages every time (20 % of note ids)."""
    ident = getattr(message, "note_id", None) or str(message.message_id)
    return int(hashlib.sha256(ident.encode()).hexdigest(), 16) % RAISE_ONE_IN == 0


def recorded(
    handler: Callable[[Any], Awaitable[Sequence[Envelope]]],
    recorder: Recorder,
    latency_s: float = 0.0,
    fault: Fault | None = None,
) -> Callable[[Any], Awaitable[Sequence[Envelope]]]:
    """``handler`` with its handlings recorded, its latency and its planted fault (see the module docstring)."""
    handled = 0

    async def handle(message: Envelope) -> Sequence[Envelope]:
        nonlocal handled
        number = recorder.started(message)
        try:
            if latency_s > 0:
                await asyncio.sleep(latency_s)
            if fault == "raise" and raises_on(message):
                raise PlantedFault("planted fault: raise")
            outputs = await handler(message)
        except BaseException as exc:
            note = "planted raise" if isinstance(exc, PlantedFault) else type(exc).__name__
            recorder.ended(number, "error", note=note)
            raise
        handled += 1
        if fault == "drop" and handled % DROP_EVERY == 1:
            recorder.ended(number, "done", (), note="planted drop")
            return []
        recorder.ended(number, "done", outputs)
        return outputs

    return handle


def instrument(service: Service, recorder: Recorder, latency_s: float, fault: Fault | None) -> None:
    """Wrap every consumer's handler of ``service`` (before it runs: its runners are made from these consumers)."""
    consumers: list[Consumer[Any]] = [
        dataclasses.replace(c, handler=recorded(c.handler, recorder, latency_s, fault)) for c in service.consumers
    ]
    if not hasattr(service, "_consumers"):  # a renamed attribute would leave every handling unrecorded, silently
        raise RuntimeError("Service keeps its consumers elsewhere now: update the chaos wrapper's hook")
    service._consumers = consumers  # the harness's hook; the service itself has no switch for it


def _build_for(
    stage: str,
) -> tuple[Callable[[], Any], Callable[[Any], Awaitable[BrokerApp]], tuple[type[Exception], ...]]:
    """The stage's settings reader, composition root and configuration errors (imported here: a process loads only
    its own stage, the trainer's torch not in an annotator)."""
    if stage == "annotator":
        from synthner_annotator import app as annotator  # noqa: PLC0415 - only this stage's process needs it
        from synthner_annotator.settings import AnnotatorSettings  # noqa: PLC0415

        return (
            lambda: (AnnotatorSettings(), BrokerSettings()),
            lambda r: annotator.build(*r),
            annotator.CONFIGURATION_ERRORS,
        )
    if stage == "generator":
        from synthner_generator import app as generator  # noqa: PLC0415
        from synthner_generator.settings import GeneratorSettings  # noqa: PLC0415

        return (
            lambda: (GeneratorSettings(), BrokerSettings()),
            lambda r: generator.build(*r),
            generator.CONFIGURATION_ERRORS,
        )
    from synthner_trainer import app as trainer  # noqa: PLC0415
    from synthner_trainer.settings import TrainerSettings  # noqa: PLC0415

    return lambda: (TrainerSettings(), BrokerSettings()), lambda r: trainer.build(*r), trainer.CONFIGURATION_ERRORS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.chaos.wrapped", description=__doc__)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each handling takes first")
    parser.add_argument("--fault", choices=FAULTS, help="a planted fault (the chaos run's self-test)")
    args = parser.parse_args(argv)
    read, build, errors = _build_for(args.stage)
    recorder = Recorder.from_environment()

    async def wrapped_build(settings: Any) -> ServiceApp:
        app = await build(settings)
        instrument(app.service, recorder, args.latency, args.fault)
        return app

    try:
        return run_service(f"synthner-{args.stage}", read, wrapped_build, configuration_errors=errors)
    finally:
        recorder.close()


if __name__ == "__main__":
    raise SystemExit(main())
