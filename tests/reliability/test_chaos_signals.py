"""Issue 32: SIGTERM or SIGINT to the chaos harness stops every process it started and its private RabbitMQ node.

The harness runs its services in sessions of their own and a private RabbitMQ node, so a signal to the harness does
not reach them: without turning the signal into the run's clean-up (``synthner_shared.stopping.run_stoppable``),
they were left running, re-parented to init. Every process the run starts carries a marker in its environment
(inherited from the harness), which is how these tests find what is left, whatever its parent or process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from synthner_shared.broker_node import PrivateRabbitMQ, rabbitmq_scripts

REPO_ROOT = Path(__file__).resolve().parents[2]
HARNESS = REPO_ROOT / "benchmarks" / "chaos.py"
MARKER = "SYNTHNER_TEST_RUN"

needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="reads /proc (Linux)")
needs_rabbitmq = pytest.mark.skipif(rabbitmq_scripts() is None, reason="needs rabbitmq-server to start a private node")


@dataclass(frozen=True)
class Proc:
    pid: int
    pgid: int
    command: str


def live_processes(marker: str | None = None) -> list[Proc]:
    """Every live process (zombies, which hold nothing but their pid, count as gone), or only those whose
    environment holds ``MARKER=marker``. ``epmd`` is never listed: it is the machine's shared name daemon, which a
    node starts if none runs, not part of any node."""
    found = []
    wanted = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            environ = (entry / "environ").read_bytes().split(b"\0") if marker is not None else []
        except OSError:  # it ended meanwhile, or is not ours
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X") or name == "epmd":
            continue
        if marker is not None and wanted not in environ:
            continue
        found.append(Proc(int(entry.name), int(fields[2]), command or f"[{name}]"))
    return found


def wait_for_exits(procs: list[Proc], timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) until each process has exited: a pidfd becomes readable when its process ends,
    whoever its parent is."""
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            fd = os.pidfd_open(proc.pid)
        except ProcessLookupError:
            continue  # already gone
        try:
            select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)


def leftovers_after(list_them: Callable[[], list[Proc]], timeout_s: float) -> list[Proc]:
    """Wait until ``list_them()`` is empty (killed processes that are not our children are reaped by init when it
    gets to them), at most ``timeout_s``; returns what is still there."""
    deadline = time.monotonic() + timeout_s
    while (left := list_them()) and time.monotonic() < deadline:
        wait_for_exits(left, deadline - time.monotonic())
    return left


def epmd_names() -> str:
    try:
        return subprocess.run(["epmd", "-names"], capture_output=True, text=True, timeout=30, check=False).stdout
    except FileNotFoundError:
        return ""


def kill_leftovers(marker: str) -> None:
    """SIGKILL every live process of this test's run, by pid (the test's own clean-up, even when it failed)."""
    for proc in live_processes(marker):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)


# --- the helper, on its own: fast ------------------------------------------------------------------------------------

STOPPABLE_PROGRAM = """
import asyncio, sys
from synthner_shared.stopping import Stopped, run_stoppable

async def work() -> None:
    try:
        print("ready", flush=True)
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0)  # the clean-up can still await, as Supervisor.stop() does
        print("cleaned up", flush=True)

try:
    run_stoppable(work())
except Stopped as exc:
    print(exc, file=sys.stderr)
    raise SystemExit(exc.exit_code)
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_runs_the_clean_up_and_exits_128_plus_its_number(signum: signal.Signals, code: int) -> None:
    program = subprocess.Popen(
        [sys.executable, "-c", STOPPABLE_PROGRAM],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert program.stdout is not None
        assert program.stdout.readline() == "ready\n"  # the handlers are installed before the work runs
        program.send_signal(signum)
        out, err = program.communicate(timeout=60)
        assert (program.returncode, out, err) == (code, "cleaned up\n", f"stopped by {signum.name}\n")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(program.pid, signal.SIGKILL)
        program.wait()


# --- the harness, stopped while its services run ---------------------------------------------------------------------


def forward_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Hand every line of ``stream`` to ``lines``, then None at its end (keeps the pipe drained)."""
    for line in stream:
        lines.put(line)
    lines.put(None)


@needs_proc
@needs_rabbitmq
@pytest.mark.rabbitmq
@pytest.mark.chaos
@pytest.mark.e2e
@pytest.mark.timeout(1000)
def test_sigterm_stops_every_process_and_the_private_node_of_the_harness_and_removes_its_workdir(
    tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex
    stderr_path = tmp_path / "harness.stderr"
    tiny = ["--notes", "4", "--part-size", "2", "--annotators", "2", "--train-documents", "4", "--broker-restarts", "0"]
    # No SIGKILL of the chaos monkey before the signal: the first comes an hour after the services are up.
    calm = ["--kill-interval", "3600", "--deadline", "1200", "--stall", "600"]
    with stderr_path.open("w", encoding="utf-8") as stderr:
        harness = subprocess.Popen(
            [sys.executable, str(HARNESS), *tiny, *calm],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, MARKER: marker, "TMPDIR": str(tmp_path)},  # its temporary workdir goes in tmp_path
            start_new_session=True,
        )
    assert harness.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=forward_lines, args=(harness.stdout, lines), daemon=True)
    reader.start()
    try:
        seen: list[str] = []
        workdir: Path | None = None
        node: str | None = None
        deadline = time.monotonic() + 600  # the trainer and the NER API import torch: slow on a busy machine
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("the services were not up within 600 s:\n" + "".join(seen) + stderr_path.read_text())
            if line is None:
                pytest.fail(f"the harness ended ({harness.wait()}) first:\n" + "".join(seen) + stderr_path.read_text())
            seen.append(line)
            if line.startswith("chaos run:"):
                workdir = Path(line.rsplit("workdir ", 1)[1].strip())
            elif line.startswith("private RabbitMQ node "):
                node = line.split()[3]
            elif line.startswith("started "):  # every service process is ready and the job is being published
                break
        assert workdir is not None
        assert workdir.is_relative_to(tmp_path)
        assert workdir.is_dir()
        assert node is not None
        assert f"name {node.split('@')[0]} " in epmd_names()
        run = [proc for proc in live_processes(marker) if proc.pgid != harness.pid]
        groups = {proc.pgid for proc in run}
        assert any("beam" in proc.command for proc in run), run  # the private node's VM
        assert len(groups) >= 6, run  # five service processes and the node, each leading a group of its own

        harness.send_signal(signal.SIGTERM)
        code = harness.wait(timeout=300)  # the services' grace period, then the node's stop

        def left() -> list[Proc]:
            return [proc for proc in live_processes() if proc.pgid in groups] + live_processes(marker)

        leftovers = leftovers_after(left, 60)
        report = "".join(seen) + stderr_path.read_text()
        assert leftovers == [], report
        assert code == 128 + signal.SIGTERM, report
        errors = stderr_path.read_text().strip().splitlines()
        assert errors[-1:] == ["chaos: stopped by SIGTERM"], report
        assert "Traceback" not in report
        assert f"name {node.split('@')[0]} " not in epmd_names()
        assert not workdir.exists()
    finally:
        if harness.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(harness.pid, signal.SIGKILL)
        harness.wait()
        kill_leftovers(marker)
        reader.join(timeout=30)


# --- the private node, cancelled while it starts ---------------------------------------------------------------------


@needs_proc
@needs_rabbitmq
@pytest.mark.rabbitmq
async def test_a_node_whose_start_is_cancelled_before_it_is_ready_is_killed(tmp_path: Path) -> None:
    node = PrivateRabbitMQ(tmp_path / "node")
    starting = asyncio.create_task(node.start())
    try:
        async with asyncio.timeout(60):
            # Spawned: start() now waits for an AMQP handshake, seconds of booting away. No event tells.
            while node.pid is None:  # noqa: ASYNC110 - a condition polled with a deadline
                await asyncio.sleep(0.01)
        pgid = node.pid
        starting.cancel()  # what SIGTERM does to a harness run through run_stoppable
        with pytest.raises(asyncio.CancelledError):
            await starting  # (had the node been ready already, start() would have returned instead)
        assert not node.running

        def left() -> list[Proc]:
            return [proc for proc in live_processes() if proc.pgid == pgid]

        assert await asyncio.to_thread(leftovers_after, left, 30) == []
        assert f"name {node.node.split('@')[0]} " not in epmd_names()
    finally:
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await node.close()
