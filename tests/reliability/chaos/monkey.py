"""The chaos monkey: SIGKILLs the supervised service processes in turn."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections import Counter
from collections.abc import Mapping

import httpx

from synthner.supervisor import Supervisor


class ChaosMonkey:
    """Kills the supervised processes, one every ``interval_s`` (jittered), each in turn in a seeded random order.

    A victim is killed once it is up again (its health URL answers 200): killing a process still starting would, at
    short intervals, keep a slow starter (the trainer imports torch) from ever working, which tests nothing.
    """

    def __init__(self, supervisor: Supervisor, victims: Mapping[str, str], interval_s: float, seed: int) -> None:
        self.supervisor = supervisor
        self.victims = list(victims)
        self.health_urls = dict(victims)
        self.interval_s = interval_s
        self.rng = random.Random(seed)  # a reproducible schedule, not security
        self.kills: Counter[str] = Counter()
        self.lock = asyncio.Lock()
        """Held while killing; a broker restart holds it to keep kills out of its check."""
        self._round: list[str] = []

    @property
    def each_killed(self) -> bool:
        return all(self.kills[name] > 0 for name in self.victims)

    def kill(self, name: str, why: str = "") -> None:
        pid = self.supervisor.kill(name, signal.SIGKILL)
        self.kills[name] += 1
        print(f"  SIGKILL {name} (pid {pid}){why}", flush=True)

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                await asyncio.sleep(self.interval_s * self.rng.uniform(0.5, 1.5))
                if not self._round:
                    self._round = self.rng.sample(self.victims, len(self.victims))
                victim = self._round.pop()
                await self.until_up(client, victim)
                async with self.lock:
                    self.kill(victim)

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
