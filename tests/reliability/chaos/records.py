"""Processing records: what each service process really did, handling by handling, and what the run concludes from
them (duplicate processing, redeliveries after a SIGKILL, a SIGTERM drain).

Every stage process of the chaos run (generator, annotators, trainer) runs the harness's wrapper entry point
(:mod:`tests.reliability.chaos.wrapped`), which appends one JSON line to a file of its own when its handler starts on
a message and one when it ends (``done`` with the keys of its outputs, or ``error``). A line holds ids only, never
note text: a key (``<message type>:<note id>``, or the job and note range of a generation part), the input's message
id, the process's name and pid, and the wall-clock time. Lines are written with one ``write`` on an ``O_APPEND``
file, so a SIGKILL loses nothing that was written and never leaves half a line.

The harness reads them while the run goes (:class:`RecordLog`: which process holds work in flight, so a SIGKILL can
be timed to hit it) and at the end (:func:`analyse`):

- a key handled to completion more than once at its stage is a **repeat**; a repeat is *explained* when the input was
  a new message the upstream stage published again (that stage's own repeat, judged there), when the process of the
  previous completion was SIGKILLed before the repeat began (its ack may not have reached the broker), or when the
  broker restarted or crashed meanwhile (unacked deliveries return; an output whose confirm was lost is published
  again). Every other repeat is a **duplicate**;
- a **redelivery** is a message that a process held in flight (started, not finished) when it was SIGKILLed and that
  another process handled afterwards;
- a **drain** (SIGTERM while the process held work) must finish every handling the process had started, exit 0, and
  none of the messages it finished may be handled again.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from synthner_shared.contracts import Envelope, GenerationRequested

RECORDS_ENV = "SYNTHNER_CHAOS_RECORDS"
"""The folder where each wrapped process writes its records."""
PROCESS_ENV = "SYNTHNER_CHAOS_PROCESS"
"""The process's name in the run (``annotator-1``)."""

Outcome = Literal["done", "error"]
OutageKind = Literal["restart", "crash"]


def message_key(message: Envelope) -> str:
    """What a handling is about, as an id: ``NoteGenerated:<note id>``, ``DocumentAnnotated:<note id>``,
    ``GenerationRequested:<job id>:<first index>+<count>``, else ``<type>:<message id>``. No text of the message."""
    if isinstance(message, GenerationRequested):
        return f"{message.type}:{message.job_id}:{message.first_index}+{message.count}"
    note_id = getattr(message, "note_id", None)
    if isinstance(note_id, str):
        return f"{message.type}:{note_id}"
    return f"{message.type}:{message.message_id}"


class Recorder:
    """Appends this process's records to ``<folder>/<name>.<pid>.jsonl`` (one ``write`` per line)."""

    def __init__(self, folder: Path, process: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.process = process
        self.pid = os.getpid()
        self.path = folder / f"{process}.{self.pid}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._numbers = itertools.count(1)

    @classmethod
    def from_environment(cls) -> Recorder:
        return cls(Path(os.environ[RECORDS_ENV]), os.environ[PROCESS_ENV])

    def _write(self, record: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def started(self, message: Envelope) -> int:
        number = next(self._numbers)
        self._write(
            {
                "e": "start",
                "n": number,
                "pid": self.pid,
                "proc": self.process,
                "key": message_key(message),
                "msg": str(message.message_id),
                "t": time.time(),
            }
        )
        return number

    def ended(self, number: int, outcome: Outcome, outputs: Sequence[Envelope] = (), *, note: str = "") -> None:
        record: dict[str, Any] = {"e": outcome, "n": number, "pid": self.pid, "t": time.time()}
        if outcome == "done":
            record["out"] = [message_key(m) for m in outputs]
        if note:
            record["note"] = note  # an error's type or a planted fault's name: never message content
        self._write(record)

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class Handling:
    """One handler call, from its records."""

    pid: int
    process: str
    number: int
    key: str
    message_id: str
    started: float
    ended: float | None = None
    outcome: Outcome | None = None
    """None: it never ended (its process was killed, or the handling was abandoned)."""
    outputs: tuple[str, ...] = ()
    note: str = ""

    @property
    def stage(self) -> str:
        return self.key.split(":", 1)[0]

    def in_flight_at(self, moment: float) -> bool:
        return self.started <= moment and (self.ended is None or self.ended > moment)


class RecordLog:
    """Reads the records of every process as they are written (only what was added since the last read)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.handlings: dict[tuple[int, int], Handling] = {}
        self._open: dict[int, dict[int, Handling]] = defaultdict(dict)
        self._finished: Counter[int] = Counter()
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}

    def refresh(self) -> None:
        if not self.folder.is_dir():
            return
        for path in self.folder.glob("*.jsonl"):
            offset = self._offsets.get(path, 0)
            if path.stat().st_size <= offset:
                continue
            with path.open("rb") as stream:
                stream.seek(offset)
                data = self._partial.pop(path, b"") + stream.read()
                self._offsets[path] = stream.tell()
            *lines, rest = data.split(b"\n")
            if rest:
                self._partial[path] = rest
            for line in lines:
                if line:
                    self._add(json.loads(line))

    def _add(self, record: dict[str, Any]) -> None:
        ident = (int(record["pid"]), int(record["n"]))
        if record["e"] == "start":
            started = Handling(
                pid=ident[0],
                process=str(record["proc"]),
                number=ident[1],
                key=str(record["key"]),
                message_id=str(record["msg"]),
                started=float(record["t"]),
            )
            self.handlings[ident] = self._open[ident[0]][ident[1]] = started
            return
        handling = self._open[ident[0]].pop(ident[1], None)
        if handling is None:
            return  # its start line was never written: nothing to join
        self._finished[ident[0]] += 1
        handling.ended = float(record["t"])
        handling.outcome = "done" if record["e"] == "done" else "error"
        handling.outputs = tuple(str(k) for k in record.get("out", ()))
        handling.note = str(record.get("note", ""))

    def in_flight(self, pid: int) -> list[Handling]:
        """The handlings ``pid`` has started and not finished (as far as its records tell)."""
        return list(self._open[pid].values())

    def finished(self, pid: int) -> int:
        """How many handlings ``pid`` has finished (done or failed)."""
        return self._finished[pid]


@dataclass(frozen=True)
class Kill:
    """A SIGKILL the harness sent: to whom, when (wall clock), and how many handlings it held in flight then."""

    process: str
    pid: int
    at: float
    in_flight: int
    why: str = ""


@dataclass(frozen=True)
class Outage:
    """The broker down: ``kind`` is ``restart`` (a graceful stop and start) or ``crash`` (SIGKILL, then start)."""

    kind: OutageKind
    began: float
    ended: float


@dataclass(frozen=True)
class Drain:
    """A SIGTERM the harness sent to a process holding work, and how the process ended."""

    process: str
    pid: int
    at: float
    held: int
    exit_code: int | None


@dataclass
class Analysis:
    handled: Counter[str] = field(default_factory=Counter)
    """Handler calls per stage (message type)."""
    repeats: Counter[str] = field(default_factory=Counter)
    """Repeated completions by explanation: ``upstream``, ``kill``, ``broker``, ``duplicate``."""
    duplicates: list[str] = field(default_factory=list)
    """The keys of the unexplained repeats (one entry per repeat)."""
    in_flight_kills: int = 0
    """SIGKILLs that hit a process while it held work in flight."""
    redeliveries: int = 0
    """Messages held in flight by a SIGKILLed process and handled afterwards by another."""
    lost_in_flight: list[str] = field(default_factory=list)
    """Keys held in flight by a SIGKILLed process that no process handled afterwards."""
    drain_problems: list[str] = field(default_factory=list)
    planted: Counter[str] = field(default_factory=Counter)
    """Handlings where a planted fault struck, by fault."""


def _explain(
    handling: Handling,
    previous: Handling,
    *,
    seen_messages: set[str],
    published: int,
    origin: float,
    kills: Sequence[Kill],
    outages: Sequence[Outage],
) -> str:
    if handling.message_id not in seen_messages and len(seen_messages) < max(1, published):
        return "upstream"
    if any(k.pid == previous.pid and previous.started < k.at <= handling.started for k in kills):
        return "kill"
    if any(origin < o.began <= handling.started for o in outages):
        return "broker"
    return "duplicate"


def analyse(
    handlings: Iterable[Handling],
    kills: Sequence[Kill] = (),
    outages: Sequence[Outage] = (),
    drains: Sequence[Drain] = (),
) -> Analysis:
    """What the records say: see the module docstring for the rules."""
    result = Analysis()
    everything = sorted(handlings, key=lambda h: h.started)
    by_message: dict[str, list[Handling]] = defaultdict(list)
    for handling in everything:
        result.handled[handling.stage] += 1
        by_message[handling.message_id].append(handling)
        if handling.note.startswith("planted"):
            result.planted[handling.note] += 1
    _count_repeats(result, everything, kills, outages)
    _count_redeliveries(result, everything, by_message, kills)
    for drain in drains:
        result.drain_problems.extend(_drain_problems(drain, everything, by_message))
    return result


def _count_repeats(
    result: Analysis, everything: Sequence[Handling], kills: Sequence[Kill], outages: Sequence[Outage]
) -> None:
    completed: dict[str, list[Handling]] = defaultdict(list)
    producers: dict[str, list[Handling]] = defaultdict(list)
    for handling in everything:
        if handling.outcome == "done":
            completed[handling.key].append(handling)
            for output in handling.outputs:
                producers[output].append(handling)
    for key, done in completed.items():
        seen = {done[0].message_id}
        upstream_start = min((p.started for p in producers[key]), default=done[0].started)
        for previous, handling in itertools.pairwise(done):
            why = _explain(
                handling,
                previous,
                seen_messages=seen,
                published=len(producers[key]),
                origin=min(upstream_start, previous.started),
                kills=kills,
                outages=outages,
            )
            result.repeats[why] += 1
            if why == "duplicate":
                result.duplicates.append(key)
            seen.add(handling.message_id)


def _count_redeliveries(
    result: Analysis, everything: Sequence[Handling], by_message: dict[str, list[Handling]], kills: Sequence[Kill]
) -> None:
    for kill in kills:
        held = [h for h in everything if h.pid == kill.pid and h.in_flight_at(kill.at)]
        if not held:
            continue
        result.in_flight_kills += 1
        for handling in held:
            if any(o.pid != kill.pid and o.started >= kill.at for o in by_message[handling.message_id]):
                result.redeliveries += 1
            else:
                result.lost_in_flight.append(handling.key)


def _drain_problems(drain: Drain, everything: Sequence[Handling], by_message: dict[str, list[Handling]]) -> list[str]:
    problems = []
    own = [h for h in everything if h.pid == drain.pid]
    if drain.held == 0:
        problems.append(f"SIGTERM to {drain.process} found no work in flight: the drain proved nothing")
    unfinished = [h for h in own if h.outcome is None or (h.outcome == "error" and "Cancelled" in h.note)]
    if unfinished:
        problems.append(f"{drain.process} did not finish {len(unfinished)} handlings it had started before exiting")
    expected = 0 if not unfinished else 1
    if drain.exit_code != expected:
        problems.append(f"{drain.process} exited {drain.exit_code} after SIGTERM (expected {expected})")
    again = sorted(
        {
            h.key
            for h in own
            if h.outcome == "done"
            for other in by_message[h.message_id]
            if other.pid != drain.pid and other.started >= h.started
        }
    )
    if again:
        problems.append(f"{len(again)} messages {drain.process} finished before its SIGTERM exit were handled again")
    return problems


def read_records(folder: Path) -> list[Handling]:
    log = RecordLog(folder)
    log.refresh()
    return list(log.handlings.values())
