"""Run services as separate OS processes and watch them: the demo's ``--processes`` mode.

Each process is a service's own production entry point (``python -m synthner_generator`` and so on) with its settings
in environment variables, its output in ``<log dir>/<name>.log``, and its health endpoint polled for readiness. The
supervisor notices a process that ends on its own (:meth:`Supervisor.guard` turns that into :class:`ProcessFailed`,
one line naming the process, its exit code and its log) and stops them all at the end: SIGTERM, the grace period the
services honour, then SIGKILL, and SIGKILL to whatever is left in their process groups.

Each process runs in a session of its own (so Ctrl-C in a terminal reaches the program, which stops them in order):
a signal to the program does not reach them. The program must therefore turn SIGTERM and SIGINT into its normal
clean-up, :meth:`Supervisor.stop` included; :func:`synthner_shared.stopping.run_stoppable` does (the chaos harness
runs through it). Python's default SIGTERM action would leave every process running, re-parented to init.

A process whose spec says ``restart=True`` is started again whenever it ends, as an orchestrator restarts a crashed
container (the chaos run kills them on purpose); it fails the run only when it keeps ending: more than
``max_restarts`` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from synthner_shared.stopping import kill_process_group, wait_process_group_gone

T = TypeVar("T")


class ProcessFailed(RuntimeError):
    """A supervised process ended, or did not become ready in time. The message is one line."""


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to (and overriding) this process's environment."""
    ready_url: str | None = None
    """Polled until it answers 200 (a service's ``/readyz``)."""
    restart: bool = False
    """Start it again whenever it ends (while the supervisor is not stopping)."""


def module_argv(module: str, *arguments: str) -> list[str]:
    """``python -m module ...`` with this interpreter: the entry point a service's container runs."""
    return [sys.executable, "-m", module, *arguments]


def settings_env(prefix: str, settings: BaseModel, *, exclude: Sequence[str] = ()) -> dict[str, str]:
    """Environment variables that rebuild ``settings`` in a child process: ``<PREFIX><FIELD>`` for each top-level
    field set explicitly, strings as they are and everything else as JSON (pydantic-settings parses complex values from
    JSON). Secrets are written in clear, as the variable is their only way into the child."""

    def reveal(value: object) -> object:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, BaseModel):  # every field: a default may be what tells a union's members apart
            return {k: reveal(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [reveal(v) for v in value]
        return value

    env: dict[str, str] = {}
    for name in sorted(settings.model_fields_set - set(exclude)):
        value = to_jsonable_python(reveal(getattr(settings, name)))
        if value is None:
            continue
        env[f"{prefix}{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


class Supervisor:
    """Start, watch (and restart, where the spec asks) and stop a group of processes."""

    def __init__(self, log_dir: Path, grace_s: float = 30.0, max_restarts: int = 100) -> None:
        self.log_dir = log_dir
        self.grace_s = grace_s
        self.max_restarts = max_restarts
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.restarts: dict[str, int] = {}
        """How many times each process was started again after it ended."""
        self._exits: dict[str, asyncio.Task[int]] = {}
        self._stopping = False

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    async def start(self, spec: ProcessSpec) -> None:
        self.restarts.setdefault(spec.name, 0)
        await self._launch(spec)
        self._exits[spec.name] = asyncio.create_task(self._watch(spec))

    async def _launch(self, spec: ProcessSpec) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(spec.name).open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **spec.env},
                start_new_session=True,  # Ctrl-C reaches the demo, which stops the children in order
            )
        self.processes[spec.name] = process

    async def _watch(self, spec: ProcessSpec) -> int:
        """Wait for the process to end; restart it if its spec asks. Returns the exit code once it ends for good."""
        while True:
            process = self.processes[spec.name]
            code = await process.wait()
            kill_process_group(process.pid)  # whatever it started in its group goes with it (as with a container)
            if self._stopping or not spec.restart or self.restarts[spec.name] >= self.max_restarts:
                return code
            self.restarts[spec.name] += 1
            with self.log_path(spec.name).open("a", encoding="utf-8") as log:
                log.write(f"supervisor: exited with code {code}; restart {self.restarts[spec.name]}\n")
            await self._launch(spec)
            if self.stopping:  # stop() began while it was being started
                with contextlib.suppress(ProcessLookupError):
                    self.processes[spec.name].send_signal(signal.SIGTERM)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def kill(self, name: str, signum: int = signal.SIGKILL) -> int:
        """Send ``signum`` (default SIGKILL) to the process's whole group; returns the pid it was sent to."""
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        return process.pid

    def _failure(self, name: str) -> ProcessFailed:
        code = self.processes[name].returncode
        again = f" (after {self.restarts[name]} restarts)" if self.restarts.get(name) else ""
        return ProcessFailed(f"the {name} process exited with code {code}{again}: see {self.log_path(name)}")

    def check(self) -> None:
        """Raise :class:`ProcessFailed` if a process has ended (while not being stopped)."""
        for name, exited in self._exits.items():
            if exited.done() and not self._stopping:
                raise self._failure(name)

    async def guard(self, work: Awaitable[T]) -> T:
        """Await ``work``; if a supervised process ends first, cancel it and raise :class:`ProcessFailed`."""
        task = asyncio.ensure_future(work)
        exits = list(self._exits.values())
        try:
            while True:
                done, _ = await asyncio.wait([task, *exits], return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    return task.result()
                self.check()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def wait_ready(self, name: str, url: str, deadline_s: float) -> None:
        """Poll ``url`` until it answers 200; the process ending or the deadline passing raises ProcessFailed."""

        async def poll() -> None:
            async with httpx.AsyncClient(timeout=5) as client:
                while True:
                    try:
                        if (await client.get(url)).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    # A health endpoint has no push notification; poll it gently.
                    await asyncio.sleep(0.25)

        try:
            async with asyncio.timeout(deadline_s):
                await self.guard(poll())
        except TimeoutError:
            raise ProcessFailed(
                f"the {name} process was not ready within {deadline_s:g} s: see {self.log_path(name)}"
            ) from None

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM every running process, wait the grace period, SIGKILL what is left (and whatever each left in
        its process group), wait until those groups are gone; returns the exit codes."""
        self._stopping = True
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        waiting = [task for task in self._exits.values() if not task.done()]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=self.grace_s)
            if late:
                for process in self.processes.values():
                    if process.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            process.kill()
                await asyncio.wait(late)
        for process in self.processes.values():  # its group was SIGKILLed when it ended (_watch)
            await wait_process_group_gone(process.pid, timeout_s=10)
        return {name: process.returncode for name, process in self.processes.items()}
