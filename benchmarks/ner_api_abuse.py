"""The NER API under abuse: do well-behaved clients notice?

The API (lexicon test model of :mod:`synthner_ner_api.testing`, its default limits: 10 requests/s per key in bursts
of 20, a model queue of 256 texts, 8 MB bodies, a 30 s time limit) is served by uvicorn on 127.0.0.1 in a process of
its own. Four well-behaved clients, each with its own key, send NER requests paced under their rate limit
(``--client-rps``, default 5 a second each) for the whole run; their latencies are measured in this process.

``--duration`` is cut into ``--rounds`` (default 3) pairs of windows, one unloaded, one under abuse, so that other
load on a shared machine weighs on both alike. In the abused windows a separate abuser process (its event loop never
delays the measured clients) runs:

- a flood from one key: ``--flood-connections`` connections (default 8), each sending the next request as soon as
  the last is answered; the rate limit answers 429 (``flood_429``);
- 8 MB bodies without a valid key (none, or a wrong one of the right shape), each on a new connection, on
  ``--unauth-connections`` connections (default 2), written while the answer is awaited. The API refuses them from
  the headers and closes the connection rather than reading the body: ``unauth_rejected`` counts the 401 answers
  plus the connections reset before the 401 could be read (printed apart).

The run fails (exit 1) when the clients' p99 latency under abuse is over ``--max-ratio`` (default 2) times their
p99 unloaded, or any client request fails (any status but 200, or no answer). The last line is ``p99_ratio=…
failed=… flood_429=… unauth_rejected=… seconds=…``; before it each phase's requests, p50, p99 and maximum, and the
abusers' counts. The abuser shares this machine's cores with the API, so on a small machine part of what the clients
feel is CPU taken by the attack itself, not by the API's handling of it.

    python benchmarks/ner_api_abuse.py [--duration 60] [--rounds 3] [--client-rps 5] [--flood-connections 8]
        [--unauth-connections 2] [--max-ratio 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from synthner_ner_api.auth import key_line, new_key
from synthner_ner_api.testing import LEXICON, wait_ready, write_model
from synthner_shared.testing import sample_note
from synthner_shared.testing_browser import free_port

T = TypeVar("T")
CLIENTS = 4
CLOSED_ON_BODY = "closed on the body"
"""An 8 MB request whose connection the server reset before its refusal could be read (it stopped reading the
body: ``Connection: close`` on a refusal with a large body to come); counted as rejected."""
BIG_BODY_BYTES = 8_000_000
NOTES = [sample_note(seed, words=80).text for seed in range(50)]


def serve(store: Path, keys: Path, port: int) -> None:
    """Server mode (the child process): the API with its default limits over the lexicon model in ``store``."""
    import uvicorn  # noqa: PLC0415

    from synthner_ner_api.app import create_app  # noqa: PLC0415
    from synthner_ner_api.models import ModelRegistry  # noqa: PLC0415
    from synthner_ner_api.settings import NerApiSettings  # noqa: PLC0415
    from synthner_ner_api.testing import load_lexicon_model  # noqa: PLC0415
    from synthner_shared.logs import configure_logging  # noqa: PLC0415

    configure_logging("WARNING")
    settings = NerApiSettings(auth_mode="api_keys", api_keys_file=keys, model_store=store, listen_for_models=False)
    app = create_app(settings, ModelRegistry(load_lexicon_model, store=store))
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False, proxy_headers=False)


# --- the abuser (a process of its own, so its event loop does not delay the measured clients) ---------------------


@dataclass
class Abuse:
    flood: Counter[str] = field(default_factory=Counter)
    unauth: Counter[str] = field(default_factory=Counter)

    async def flood_one(self, client: httpx.AsyncClient, key: str, stop_at: float) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        while time.monotonic() < stop_at:
            try:
                response = await client.post("/v1/ner", json={"text": "asthma and diabetes"}, headers=headers)
                self.flood[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                self.flood[type(exc).__name__] += 1

    async def big_unauthenticated(self, port: int, body: bytes, stop_at: float) -> None:
        """8 MB bodies without a valid key (none, or a wrong one), each on a new connection, written in 1 MB pieces
        while the answer is awaited: a refusal is counted by its status as soon as it comes, whether or not the
        body was taken."""
        attempts = 0
        while time.monotonic() < stop_at:
            auth = f"Authorization: Bearer {new_key()}\r\n" if attempts % 2 else ""  # a wrong key of the right shape
            attempts += 1
            head = (
                f"POST /v1/ner HTTP/1.1\r\nHost: ner\r\n{auth}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError as exc:
                self.unauth[type(exc).__name__] += 1
                continue
            writing = asyncio.create_task(self._write(writer, head.encode(), body))
            try:
                line = await asyncio.wait_for(reader.readline(), 60)
                self.unauth[line.split()[1].decode() if line else "closed without an answer"] += 1
            except (ConnectionResetError, BrokenPipeError):
                self.unauth[CLOSED_ON_BODY] += 1  # the server closed the connection on the unread body
            except (OSError, TimeoutError) as exc:
                self.unauth[type(exc).__name__] += 1
            finally:
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, head: bytes, body: bytes) -> None:
        writer.write(head)
        view = memoryview(body)  # pieces without copies: the abuser's own CPU is not what is measured
        for start in range(0, len(body), 1_000_000):
            writer.write(view[start : start + 1_000_000])
            await writer.drain()


async def abuse(port: int, flood_key: str, flood_connections: int, unauth_connections: int) -> None:
    """Abuser mode (the child process): for each ``SECONDS`` line on stdin, flood and send big unauthenticated bodies
    for that long, then print the counts so far as JSON; ends at end of input."""
    body = b'{"text": "' + b"a" * (BIG_BODY_BYTES - 12) + b'"}'
    assert len(body) == BIG_BODY_BYTES
    state = Abuse()
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    limits = httpx.Limits(max_connections=max(1, flood_connections))
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as flood:
        print("ready", flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            stop_at = time.monotonic() + float(line)
            await asyncio.gather(
                *(state.flood_one(flood, flood_key, stop_at) for _ in range(flood_connections)),
                *(state.big_unauthenticated(port, body, stop_at) for _ in range(unauth_connections)),
            )
            print(json.dumps({"flood": state.flood, "unauth": state.unauth}), flush=True)


# --- the well-behaved clients -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    """The API process's CPU time while this phase was current."""

    def p(self, quantile: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))] * 1000

    def summary(self) -> str:
        return (
            f"{self.name}: requests={len(self.latencies)} failed={sum(self.failures.values())} "
            f"p50_ms={self.p(0.5):.1f} p99_ms={self.p(0.99):.1f} max_ms={self.p(1.0):.1f} "
            f"api_cpu_cores={self.server_cpu_s / max(self.seconds, 1e-9):.2f}"
        )


@dataclass
class Clients:
    """The four well-behaved clients; each request counts in the phase that was current when it was sent."""

    client: httpx.AsyncClient
    keys: list[str]
    rps: float
    phase: Phase = field(default_factory=lambda: Phase("warm-up"))
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, index: int) -> None:
        """A request every ``1/rps`` seconds (never two at once) until stopped."""
        headers = {"Authorization": f"Bearer {self.keys[index]}"}
        position = index
        next_at = time.monotonic()
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), max(0.0, next_at - time.monotonic()))
            if self.stop.is_set():
                return
            current = self.phase
            started = time.perf_counter()
            try:
                note = NOTES[position % len(NOTES)]
                response = await self.client.post("/v1/ner", json={"text": note}, headers=headers)
            except httpx.HTTPError as exc:
                current.failures[type(exc).__name__] += 1
            else:
                current.latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    current.failures[str(response.status_code)] += 1
            position += CLIENTS
            next_at = max(next_at + 1 / self.rps, time.monotonic())


async def start_abuser(args: argparse.Namespace, port: int, flood_key: str) -> asyncio.subprocess.Process:
    command = [__file__, "--abuse", str(port), flood_key, str(args.flood_connections), str(args.unauth_connections)]
    abuser = await asyncio.create_subprocess_exec(
        sys.executable, *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert abuser.stdout is not None
    line = await asyncio.wait_for(abuser.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise RuntimeError(f"the abuser did not start: {line!r}")
    return abuser


async def abused_window(abuser: asyncio.subprocess.Process, seconds: float) -> dict[str, dict[str, int]]:
    """Abuse for ``seconds``; the abuser's counts so far."""
    assert abuser.stdin is not None
    assert abuser.stdout is not None
    abuser.stdin.write(f"{seconds}\n".encode())
    await abuser.stdin.drain()
    counts: dict[str, dict[str, int]] = json.loads(await asyncio.wait_for(abuser.stdout.readline(), seconds + 120))
    return counts


async def measured(phase: Phase, pid: int, work: Awaitable[T]) -> T:
    """Await ``work``, adding its wall time and the API process's CPU time to ``phase``."""
    wall, cpu = time.monotonic(), cpu_seconds(pid)
    result = await work
    phase.seconds += time.monotonic() - wall
    phase.server_cpu_s += cpu_seconds(pid) - cpu
    return result


async def drive(args: argparse.Namespace, port: int, server: subprocess.Popen[bytes], keys: list[str]) -> int:
    window = args.duration / (2 * args.rounds)
    unloaded, attacked, between = Phase("unloaded"), Phase("under abuse"), Phase("between")
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=CLIENTS)) as http:
        await wait_ready(http, server)
        abuser = await start_abuser(args, port, keys[CLIENTS])
        started = time.monotonic()
        clients = Clients(http, keys, args.client_rps)
        running = asyncio.gather(*(clients.run(i) for i in range(CLIENTS)))
        await asyncio.sleep(2)  # warm-up: connections open, the first model calls
        counts: dict[str, dict[str, int]] = {"flood": {}, "unauth": {}}
        for _ in range(args.rounds):  # alternating windows: a busy shared machine weighs on both phases alike
            clients.phase = unloaded
            await measured(unloaded, server.pid, asyncio.sleep(window))
            clients.phase = attacked
            counts = await measured(attacked, server.pid, abused_window(abuser, window))
            clients.phase = between  # the abusers' last requests draining: counted in neither phase
            await asyncio.sleep(0.5)
        clients.stop.set()
        await running
        abuser_cores = cpu_seconds(abuser.pid) / attacked.seconds  # it idles outside the abused windows
        assert abuser.stdin is not None
        abuser.stdin.close()
        await abuser.wait()
    for current in (unloaded, attacked):
        print(current.summary())
        if current.failures:
            print(f"  failures: {dict(current.failures)}")
    print(f"flood (one key, {args.flood_connections} connections): {counts['flood']}")
    print(f"8 MB unauthenticated bodies ({args.unauth_connections} connections): {counts['unauth']}")
    print(f"the abuser process itself used {abuser_cores:.2f} cores of this machine's {os.cpu_count()}")
    ratio = attacked.p(0.99) / unloaded.p(0.99)
    failed = sum(sum(phase.failures.values()) for phase in (unloaded, attacked, between))
    seconds = time.monotonic() - started
    print(
        f"p99_ratio={ratio:.2f} failed={failed} flood_429={counts['flood'].get('429', 0)} "
        f"unauth_rejected={counts['unauth'].get('401', 0) + counts['unauth'].get(CLOSED_ON_BODY, 0)} "
        f"seconds={seconds:.0f}"
    )
    return 0 if ratio <= args.max_ratio and failed == 0 else 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve(Path(argv[1]), Path(argv[2]), int(argv[3]))
        return 0
    if argv[:1] == ["--abuse"]:
        asyncio.run(abuse(int(argv[1]), argv[2], int(argv[3]), int(argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured: half unloaded, half abused")
    parser.add_argument("--rounds", type=int, default=3, help="unloaded/abused window pairs the duration is cut into")
    parser.add_argument("--client-rps", type=float, default=5.0, help="requests a second of each of the 4 clients")
    parser.add_argument("--flood-connections", type=int, default=8, help="connections flooding with one key")
    parser.add_argument("--unauth-connections", type=int, default=2, help="connections sending 8 MB without a key")
    parser.add_argument("--max-ratio", type=float, default=2.0, help="largest p99 under abuse / p99 unloaded")
    args = parser.parse_args(argv)
    keys = [new_key() for _ in range(CLIENTS + 1)]  # the last one floods
    names = [f"clinic-{i}" for i in range(CLIENTS)] + ["flooder"]
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "models"
        write_model(store, "v1", "Disease", LEXICON)
        key_file = Path(folder) / "keys"
        key_file.write_text("".join(key_line(n, "user", k) + "\n" for n, k in zip(names, keys, strict=True)))
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(store), str(key_file), str(port)])
        try:
            return asyncio.run(drive(args, port, server, keys))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
