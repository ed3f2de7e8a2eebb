"""A consumer service in its own process, for tests that kill or signal it.

Consumes the annotator role (NoteGenerated -> DocumentAnnotated) with settings from the environment
(``SYNTHNER_BROKER_*``). ``argv[1]`` picks the handler's behaviour:

- ``echo``: annotate without entities;
- ``block``: report the delivery on stdout, then never finish (the test kills the process);
- ``crash``: report the delivery, then exit at once without acking (a consumer that dies on this message);
- ``wait-stdin``: report the delivery, finish only after a line arrives on stdin (the test sends SIGTERM first).

Every line on stdout is a protocol line the test waits for: ``READY``, ``STARTED <note_id>``, ``STOPPING`` (a
stop was requested, e.g. by SIGTERM), ``EXIT <finished>``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from synthner_shared.contracts import Envelope, NoteGenerated
from synthner_shared.messaging import ANNOTATOR, BrokerSettings, Consumer, Service
from synthner_shared.testing import annotate_without_entities


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(behaviour: str) -> int:
    async def handle(note: NoteGenerated) -> Sequence[Envelope]:
        if behaviour != "echo":
            say(f"STARTED {note.note_id}")
        if behaviour == "block":
            await asyncio.Event().wait()
        elif behaviour == "crash":
            os._exit(3)
        elif behaviour == "wait-stdin":
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        return [annotate_without_entities(note, producer="consumer-process")]

    service = Service(BrokerSettings(), "consumer-process", [Consumer(ANNOTATOR, (NoteGenerated,), handle)])
    run = asyncio.create_task(service.run())
    started = asyncio.create_task(service.wait_started())
    await asyncio.wait({run, started}, return_when=asyncio.FIRST_COMPLETED)
    if started.done():
        say("READY")

    async def report_stop() -> None:
        await service.wait_stop_requested()
        say("STOPPING")

    reporter = asyncio.create_task(report_stop())
    finished = await run
    await reporter
    say(f"EXIT {finished}")
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
