"""A private RabbitMQ node for tests and benchmarks that stop and restart the broker (the chaos run).

Restarting the broker must never touch the node other work shares (``127.0.0.1:5672``), so this starts a node of its
own from the locally installed ``rabbitmq-server``: its own node name, AMQP port and distribution port on loopback,
its data, logs, configuration, Erlang cookie and (empty) plugin list under a folder of its own. It is a child process
of the caller, in a session of its own:

- :meth:`PrivateRabbitMQ.start` waits for an AMQP handshake (a connection that opens), not only an open port;
- :meth:`PrivateRabbitMQ.stop` asks the node to stop (``rabbitmqctl -n NODE stop``); its data stays, so durable
  queues and persistent messages are there again after :meth:`PrivateRabbitMQ.start`;
- :meth:`PrivateRabbitMQ.crash` SIGKILLs its Erlang VM instead (no stop at all); its data stays too;
- :meth:`PrivateRabbitMQ.close` (also on leaving ``async with``, whatever the reason, Ctrl-C included) stops it and
  kills whatever is left of its process group (``beam.smp`` and its helpers), so the node is gone from ``epmd``;
- a start that does not end with the node ready (it failed, timed out, or the caller was cancelled: a program stopped
  by SIGTERM through :func:`synthner_shared.stopping.run_stoppable`) kills the half-started node there and then, and
  so does a :meth:`PrivateRabbitMQ.stop` or a ``rabbitmqctl`` call that is cancelled.

A program that starts a node must turn SIGTERM into its normal clean-up (:func:`~synthner_shared.stopping.run_stoppable`
does): Python's default SIGTERM action would end it at once and leave the node running, re-parented to init.

It needs ``rabbitmq-server`` and ``rabbitmqctl`` (the Debian/Ubuntu package keeps the real scripts in
``/usr/lib/rabbitmq/bin``; its ``/usr/sbin`` wrappers switch to the ``rabbitmq`` user, which could not write here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

import aio_pika
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from synthner_shared.stopping import kill_process_group, wait_process_group_gone

log = logging.getLogger(__name__)

RABBITMQ_BIN_ENV = "SYNTHNER_RABBITMQ_BIN"
"""A folder holding ``rabbitmq-server`` and ``rabbitmqctl`` (overrides the search below)."""
_PACKAGE_SCRIPTS = Path("/usr/lib/rabbitmq/bin")  # the Debian/Ubuntu package's scripts, without the user switch


class BrokerNodeError(RuntimeError):
    """The private node could not be started or stopped; the message says why (and where its log is)."""


def rabbitmq_scripts() -> Path | None:
    """The folder of ``rabbitmq-server`` and ``rabbitmqctl`` to run as this user, or None when not installed."""
    override = os.environ.get(RABBITMQ_BIN_ENV)
    candidates = [Path(override)] if override else []
    candidates.append(_PACKAGE_SCRIPTS)
    found = shutil.which("rabbitmq-server")
    if found:
        candidates.append(Path(found).resolve().parent)
    for folder in candidates:
        if (folder / "rabbitmq-server").is_file() and (folder / "rabbitmqctl").is_file():
            return folder
    return None


def _beam_processes(pgid: int) -> list[int]:
    """The Erlang VMs (``beam.smp``) of process group ``pgid``, from ``/proc`` (none found where there is none)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended meanwhile, or is not ours
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if name.startswith("beam") and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRabbitMQ:
    """One RabbitMQ node of its own, started and stopped on demand; see the module docstring.

    ``async with PrivateRabbitMQ() as node: ... node.url ... await node.restart()``
    """

    def __init__(self, base_dir: Path | None = None, *, start_timeout_s: float = 180.0) -> None:
        scripts = rabbitmq_scripts()
        if scripts is None:
            raise BrokerNodeError(
                f"rabbitmq-server is not installed (apt-get install rabbitmq-server, or set {RABBITMQ_BIN_ENV})"
            )
        self._scripts = scripts
        self._owned_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="synthner-rabbitmq-")) if base_dir is None else base_dir
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.node = f"synthner-{uuid.uuid4().hex[:10]}@localhost"
        self.port = _free_port()
        self.dist_port = _free_port()
        self.start_timeout_s = start_timeout_s
        self.starts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._env = self._environment()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def pid(self) -> int | None:
        """The node's process (the leader of its process group), once started."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def _environment(self) -> dict[str, str]:
        base = self.base_dir
        (base / "enabled_plugins").write_text("[].\n", encoding="utf-8")  # no plugins: management is not needed
        (base / "rabbitmq-env.conf").write_text("", encoding="utf-8")  # not the system's (it names its node)
        (base / "rabbitmq.conf").write_text(  # not the system's (it listens on 5672)
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n", encoding="utf-8"
        )
        variables = {
            "HOME": str(base),  # the Erlang cookie of this node and of its rabbitmqctl calls
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {**env, **variables}

    async def start(self) -> None:
        """Start the node and wait until an AMQP connection opens; raises :class:`BrokerNodeError`."""
        if self.running:
            return
        with self.log_path.open("ab") as server_log:
            self._process = await asyncio.create_subprocess_exec(
                str(self._scripts / "rabbitmq-server"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=server_log,
                stderr=asyncio.subprocess.STDOUT,
                env=self._env,
                start_new_session=True,  # its own process group: close() can take beam and its helpers down together
            )
        self.starts += 1
        try:
            async with asyncio.timeout(self.start_timeout_s):
                await self._await_handshake()
        except TimeoutError:
            await self._kill()
            raise BrokerNodeError(
                f"RabbitMQ node {self.node} did not accept AMQP connections within {self.start_timeout_s:g} s: "
                f"see {self.log_path}"
            ) from None
        except BaseException:  # it exited while starting, or the caller was cancelled (stopped by a signal)
            await self._kill()  # a node that is not ready yet is not left behind either
            raise
        log.info("private RabbitMQ node %s up on 127.0.0.1:%d", self.node, self.port)

    async def _await_handshake(self) -> None:
        process = self._process
        assert process is not None
        while True:
            if process.returncode is not None:
                raise BrokerNodeError(
                    f"RabbitMQ node {self.node} exited with code {process.returncode} while starting: "
                    f"see {self.log_path}"
                )
            try:
                # The port first (quietly): aio-pika logs every refused connection as an error.
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                connection = await aio_pika.connect(self.url, timeout=5)
            except (*CONNECTION_EXCEPTIONS, OSError, TimeoutError):
                # No event tells when the node is up; try again shortly.
                await asyncio.sleep(0.5)
                continue
            await connection.close()
            return

    async def rabbitmqctl(self, *arguments: str, timeout_s: float = 120.0) -> str:
        """Run ``rabbitmqctl -n NODE ARGUMENTS`` against this node; returns its output, raises on failure."""
        process = await asyncio.create_subprocess_exec(
            str(self._scripts / "rabbitmqctl"),
            "-n",
            self.node,
            *arguments,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._env,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(timeout_s):
                output, _ = await process.communicate()
        except TimeoutError:
            kill_process_group(process.pid)
            await process.wait()
            raise BrokerNodeError(f"rabbitmqctl {' '.join(arguments)} took over {timeout_s:g} s") from None
        except BaseException:  # cancelled: the rabbitmqctl VM is not left behind
            kill_process_group(process.pid)
            await process.wait()
            raise
        text = output.decode("utf-8", "replace")
        if process.returncode != 0:
            raise BrokerNodeError(f"rabbitmqctl {' '.join(arguments)} failed ({process.returncode}): {text[-500:]}")
        return text

    async def stop(self, timeout_s: float = 120.0) -> None:
        """Stop the node (``rabbitmqctl stop``) and wait for its process to end; kill it if it does not."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            await self.rabbitmqctl("stop", timeout_s=timeout_s)
            async with asyncio.timeout(timeout_s):
                await process.wait()
        except (BrokerNodeError, TimeoutError) as exc:
            log.warning("RabbitMQ node %s did not stop cleanly (%s); killing it", self.node, exc)
        finally:  # also when cancelled: nothing of the node is left running
            await self._kill()
        log.info("private RabbitMQ node %s stopped", self.node)

    async def restart(self) -> None:
        """Stop the node and start it again on the same ports with the same data."""
        await self.stop()
        await self.start()

    async def crash(self) -> None:
        """SIGKILL the node's Erlang VM (``beam.smp``) with no stop at all, as an OOM kill or a lost machine would,
        then the rest of its process group. Its data stays (what it had not written is gone): :meth:`start` starts it
        again on it."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        for pid in _beam_processes(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await self._kill()
        log.info("private RabbitMQ node %s crashed (SIGKILL)", self.node)

    async def _kill(self) -> None:
        """SIGKILL the node's whole process group (the ``rabbitmq-server`` shell and ``beam.smp``), reap the shell
        and wait (briefly) until init has reaped the rest, so the node's folder can be removed right after."""
        process = self._process
        if process is None:
            return
        kill_process_group(process.pid)
        await process.wait()
        if not await wait_process_group_gone(process.pid, timeout_s=10):
            log.warning("RabbitMQ node %s: processes of group %d outlived SIGKILL for 10 s", self.node, process.pid)

    def kill_now(self) -> None:
        """Synchronous last resort (a ``finally`` after the event loop is gone): SIGKILL the node's process
        group."""
        if self._process is not None and self._process.returncode is None:
            kill_process_group(self._process.pid)

    async def close(self) -> None:
        """Stop the node, leave no process of it behind, and remove its folder if this object made it."""
        try:
            await self.stop()
        finally:
            await self._kill()
            if self._owned_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
