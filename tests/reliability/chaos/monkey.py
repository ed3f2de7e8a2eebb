"""The chaos monkey: SIGKILLs the supervised service processes, timed to hit work in flight."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import Counter
from collections.abc import Mapping

import httpx

from synthner.supervisor import Supervisor
from tests.reliability.chaos.records import Kill, RecordLog

POLL_S = 0.05
"""How often the processing records are read while waiting for a victim that holds work."""


class ChaosMonkey:
    """Kills the supervised processes, one every ``interval_s`` (jittered).

    Kills alternate between two kinds. A *timed* kill waits (up to ``in_flight_wait_s``) until some victim holds work
    in flight, as its processing records (:class:`~tests.reliability.chaos.records.RecordLog`) tell: a handling
    started and not finished, so a delivery it has not acked; it kills the least-killed such victim. A victim
    qualifies only once its current process has finished some work and was not the last one killed: otherwise a
    process with a backlog would be killed again each time it comes back, and never get through it. A *round* kill
    takes each victim in turn in a seeded random order (so every process is killed, the NER API and an idle trainer
    too), once it is up again (its health URL answers 200): killing a process still starting would, at short intervals,
    keep a slow starter (the trainer imports torch) from ever working, which tests nothing.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        victims: Mapping[str, str],
        interval_s: float,
        seed: int,
        *,
        records: RecordLog,
        in_flight_wait_s: float = 5.0,
    ) -> None:
        self.supervisor = supervisor
        self.victims = list(victims)
        self.health_urls = dict(victims)
        self.interval_s = interval_s
        self.rng = random.Random(seed)  # a reproducible schedule, not security
        self.records = records
        self.in_flight_wait_s = in_flight_wait_s
        self.kills: Counter[str] = Counter()
        self.log: list[Kill] = []
        self.lock = asyncio.Lock()
        """Held while killing; a broker restart or a SIGTERM drain holds it to keep kills out of its check."""
        self._round: list[str] = []

    @property
    def each_killed(self) -> bool:
        return all(self.kills[name] > 0 for name in self.victims)

    def holding(self, name: str) -> int:
        """How many handlings the process ``name`` now holds in flight (from the records read last)."""
        process = self.supervisor.processes.get(name)
        if process is None or process.returncode is not None:
            return 0
        return len(self.records.in_flight(process.pid))

    def worth_a_timed_kill(self, name: str) -> bool:
        """It holds work in flight, has finished some since it (re)started, and was not the last one killed."""
        process = self.supervisor.processes.get(name)
        if process is None or process.returncode is not None or (self.log and self.log[-1].process == name):
            return False
        return self.holding(name) > 0 and self.records.finished(process.pid) > 0

    def kill(self, name: str, why: str = "") -> None:
        self.records.refresh()
        held = self.holding(name)
        at = time.time()
        pid = self.supervisor.kill(name, signal.SIGKILL)
        self.kills[name] += 1
        self.log.append(Kill(name, pid, at, held, why))
        holding = f", holding {held} handlings in flight" if held else ""
        print(f"  SIGKILL {name} (pid {pid}){why}{holding}", flush=True)

    async def busy_victim(self, timeout_s: float) -> str | None:
        """The least-killed victim that holds work in flight, as soon as one does; None if none did in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.records.refresh()
            busy = [name for name in self.victims if self.worth_a_timed_kill(name)]
            if busy:
                return min(busy, key=lambda name: (self.kills[name], self.rng.random()))
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(POLL_S)  # other processes append to the records; no event tells

    async def run(self) -> None:
        timed = True
        async with httpx.AsyncClient(timeout=5) as client:
            while True:  # the first kill at once (timed): a short run's flow may be over in seconds
                victim = await self.busy_victim(self.in_flight_wait_s) if timed else None
                why = " (timed: it holds work)"
                if victim is None:
                    if not self._round:
                        self._round = self.rng.sample(self.victims, len(self.victims))
                    victim, why = self._round.pop(), ""
                    await self.until_up(client, victim)
                async with self.lock:
                    self.kill(victim, why)
                timed = not timed
                await asyncio.sleep(self.interval_s * self.rng.uniform(0.5, 1.5))

    async def until_up(self, client: httpx.AsyncClient, name: str, timeout_s: float = 120.0) -> bool:
        """Wait until the process's health URL answers 200; False if it did not within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(self.health_urls[name])).status_code == 200:
                            return True
                    await asyncio.sleep(0.5)  # a health endpoint has no push notification
        except TimeoutError:
            return False
