"""Stopping a program that started other processes: SIGTERM and SIGINT run its clean-up, process groups go whole.

A program that starts processes in sessions of their own (the supervisor's services, a private RabbitMQ node) must
stop them when it is stopped itself. Python's default SIGTERM action ends the process at once, skipping every
``finally`` block, ``async with`` exit and ``atexit`` hook, so those processes would be left running, re-parented to
init. :func:`run_stoppable` runs a coroutine as :func:`asyncio.run` does, but turns the first SIGTERM or SIGINT into
a cancellation of it: its clean-up runs as on a normal end (a supervisor's SIGTERM, grace period and SIGKILL, a
node's stop), then :class:`Stopped` is raised for the caller to report and exit ``128 + signal number``. Signals
that come while that clean-up runs are ignored: the clean-up is bounded by its own grace periods.

:func:`kill_process_group` and :func:`wait_process_group_gone` take down a child started with
``start_new_session=True`` together with whatever it started in its group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
"""What a supervisor (``timeout``, CI, systemd, Kubernetes) or Ctrl-C sends to stop a program."""


class Stopped(Exception):
    """The program was stopped by a signal; its clean-up has run. ``str()`` is ``stopped by SIGTERM`` (or SIGINT)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """``128 + signal number`` (143 for SIGTERM, 130 for SIGINT), as a shell reports a process a signal ended."""
        return 128 + self.signum


def run_stoppable(main: Coroutine[Any, Any, T], signals: Sequence[int] = STOP_SIGNALS) -> T:
    """Run ``main`` in a new event loop (from the main thread, like :func:`asyncio.run`) and return its result.

    The first of ``signals`` to arrive before ``main`` ends cancels it, so its ``finally`` blocks and ``async with``
    exits run; then :class:`Stopped` is raised, chained to the error the clean-up raised, if any.
    """
    return asyncio.run(_stoppable(main, signals))


async def _stoppable(main: Coroutine[Any, Any, T], signals: Sequence[int]) -> T:
    loop = asyncio.get_running_loop()
    work = loop.create_task(main)
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if received or work.done():
            return  # already stopping (the clean-up is running), or nothing left to stop
        received.append(signum)
        work.cancel()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        try:
            value = await work
        except BaseException as exc:
            if received:
                raise Stopped(received[0]) from (None if isinstance(exc, asyncio.CancelledError) else exc)
            raise
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    if received:  # the work swallowed the cancellation: it was stopped all the same
        raise Stopped(received[0])
    return value


def kill_process_group(pgid: int, signum: int = signal.SIGKILL) -> bool:
    """Send ``signum`` to the process group ``pgid``; False when no process of it is left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group id was taken by someone else's process: none of ours is left in it
        return False
    return True


async def wait_process_group_gone(pgid: int, timeout_s: float = 10.0) -> bool:
    """Wait until no process of group ``pgid`` is left (killed members that are not our children are reaped by
    init); True once it is gone, False if some are still there after ``timeout_s``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while kill_process_group(pgid, 0):  # noqa: ASYNC110 - signal 0: is any process of the group left?
                await asyncio.sleep(0.1)  # no event tells when init reaps a process that is not our child
            return True
    return False
