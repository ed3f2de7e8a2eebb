"""Run services as separate OS processes and watch them: the demo's ``--processes`` mode.

Each process is a service's own production entry point (``python -m synthner_generator`` and so on) with its settings
in environment variables, its output in ``<log dir>/<name>.log``, and its health endpoint polled for readiness. The
supervisor notices a process that ends on its own (:meth:`Supervisor.guard` turns that into :class:`ProcessFailed`,
one line naming the process, its exit code and its log) and stops them all at the end: SIGTERM, the grace period the
services honour, then SIGKILL.
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
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

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


def module_argv(module: str, *arguments: str) -> list[str]:
    """``python -m module ...`` with this interpreter: the entry point a service's container runs."""
    return [sys.executable, "-m", module, *arguments]


def settings_env(prefix: str, settings: BaseModel, *, exclude: Sequence[str] = ()) -> dict[str, str]:
    """Environment variables that rebuild ``settings`` in a child process: ``<PREFIX><FIELD>`` for each top-level
    field set explicitly, strings as they are and everything else as JSON (pydantic-settings parses complex values from
    JSON). Secrets are written in clear, as the variable is their only way into the child."""

    def reveal(value: Any) -> Any:
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
    """Start, watch and stop a group of processes."""

    def __init__(self, log_dir: Path, grace_s: float = 30.0) -> None:
        self.log_dir = log_dir
        self.grace_s = grace_s
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._exits: dict[str, asyncio.Task[int]] = {}
        self._stopping = False

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    async def start(self, spec: ProcessSpec) -> None:
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
        self._exits[spec.name] = asyncio.create_task(process.wait())

    def _failure(self, name: str) -> ProcessFailed:
        code = self.processes[name].returncode
        return ProcessFailed(f"the {name} process exited with code {code}: see {self.log_path(name)}")

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
        """SIGTERM every running process, wait the grace period, SIGKILL what is left; returns the exit codes."""
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
        return {name: process.returncode for name, process in self.processes.items()}
