"""Load on the NER API with a model swap in the middle: concurrent clients for a bounded time, loopback only.

The API runs in its own process (uvicorn on 127.0.0.1, a free port) over a model store holding version ``v1``.
``--clients`` HTTP clients post one note each per request to ``/v1/ner`` for ``--duration`` seconds; half-way, a
new version ``v2`` is written into the store and ``POST /v1/admin/reload`` swaps it in under load. Every request
must succeed (200, answered wholly by one version); after the swap only ``v2`` may answer.

The model is the lexicon test predictor (``synthner_ner_api.testing``: no torch, so the figures are the HTTP layer,
the micro-batcher and the swap), or with ``--model DIR`` a real token-classification folder (e.g. one trained by
``synthner train``, with its shipped ONNX), served by ``python -m synthner_ner_api`` itself, with torch hidden as in
the image, and copied as both versions.

Notes are NCBI-disease texts (``--notes``, default ``../shared/data/ncbi_disease/dev.jsonl``) when present, else
generated sample text.

Memory: the server's resident set (``/proc/PID/status`` VmRSS) is sampled twice a second. Before the timed run the
clients send ``--warmup`` requests (default 200): ONNX Runtime's memory arena grows with the batch shapes it meets and
levels off after a few dozen batches, which is growth to a working size, not a leak. The swap adds one model for the
grace period (``--grace-s``, the server's ``PREVIOUS_MODEL_GRACE_S``: the previous version stays loaded for an instant
rollback), after which the previous version's memory is released. ``rss_after_swap_mb`` is the resident set at the end,
once the grace period after the swap has passed (one model loaded again, the goal with all-MiniLM-L6-v2 is at most
1 GB); ``rss_peak_mb`` the most seen. Flatness is judged while
one version serves: the growth from the start of the timed run to the swap, plus the growth from the moment ``v2``
has answered ``--warmup`` requests to the end (``steady_growth_mb``), must stay within
``max(--max-growth-mb, --max-growth-pct of the start)``, by default max(32 MB, 5 %). With the lexicon model (about
20,000 requests a minute on 2 cores) a leak of 2 kB a request passes that bound; a real model on 2 cores answers about
4 requests a second, so run it longer (``--duration 300`` catches about 50 kB a request). ``swap_mb`` is what the swap
and the new version's warm-up added.

The run fails (exit 1) on any failed request (warm-up included), a request sent after the swap answered by ``v1``,
no swap, memory over the bound, or a run too short for ``v2`` to finish its warm-up (memory not judged). The last
line is ``requests=… failed=… p50_ms=… p99_ms=… rss_start_mb=… rss_end_mb=… swap_mb=… steady_growth_mb=…
growth_bound_mb=… memory_flat=0|1 rss_peak_mb=… rss_after_swap_mb=… swapped=0|1 versions=v1:…,v2:…``.

    python benchmarks/ner_api_load.py [--duration 60] [--clients 8] [--warmup 200] [--model DIR] [--notes FILE]
        [--grace-s S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from synthner_ner_api.testing import ADMIN_KEY, LEXICON, USER_KEY, wait_ready, write_key_file, write_model
from synthner_shared.documents import read_documents
from synthner_shared.testing import sample_note

NOTES = Path(__file__).resolve().parents[2] / "shared" / "data" / "ncbi_disease" / "dev.jsonl"
RSS_EVERY_S = 0.5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_lexicon(store: Path, keys: Path, port: int, grace_s: float) -> None:
    """Server mode (run in the child process): the NER API with the lexicon loader over ``store``."""
    import uvicorn  # noqa: PLC0415

    from synthner_ner_api.app import create_app  # noqa: PLC0415
    from synthner_ner_api.models import ModelRegistry  # noqa: PLC0415
    from synthner_ner_api.settings import NerApiSettings  # noqa: PLC0415
    from synthner_ner_api.testing import load_lexicon_model  # noqa: PLC0415
    from synthner_shared.logs import configure_logging  # noqa: PLC0415

    configure_logging("WARNING")
    settings = NerApiSettings(
        auth_mode="api_keys",
        api_keys_file=keys,
        model_store=store,
        listen_for_models=False,
        rate_limit_per_s=0,  # one key sends the whole load: no per-key limit
    )
    app = create_app(settings, ModelRegistry(load_lexicon_model, store=store, previous_grace_s=grace_s))
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


def install_version(store: Path, version: str, model: Path | None) -> None:
    if model is None:
        write_model(store, version, "Disease", [*LEXICON, "cancer", "tumour", "deficiency"])
        return
    folder = store / "versions" / version
    shutil.copytree(model, folder)
    (folder / "status.json").write_text(json.dumps({"verdict": "published"}), encoding="utf-8")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc status")


def load_notes(path: Path) -> list[str]:
    if path.is_file():
        return [d.text for d in read_documents(path)][:200]
    return [sample_note(seed, words=120).text for seed in range(200)]


@dataclass
class Memory:
    """Resident-memory samples of the server (seconds since the end of the warm-up, MB) and the moments that matter."""

    pid: int
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, float]] = field(default_factory=list)
    swap_at: float | None = None
    settled_at: float | None = None
    """When ``v2`` had answered ``--warmup`` requests (its runtime's memory arena grown to what the load needs)."""
    windows: tuple[float, float] = (0.0, 0.0)
    """Growth (MB) from the start to the swap (v1 serving) and from v2's warm-up to the end."""

    def now(self) -> float:
        return time.monotonic() - self.started

    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.samples.append((self.now(), rss_mb(self.pid)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=RSS_EVERY_S)

    def at(self, moment: float) -> float:
        """The last sample taken at or before ``moment`` (the first one if none)."""
        before = [mb for t, mb in self.samples if t <= moment]
        return before[-1] if before else self.samples[0][1]

    def figures(self, max_growth_mb: float, max_growth_pct: float) -> dict[str, float]:
        start, end = self.samples[0][1], self.samples[-1][1]
        before_swap = self.at(self.swap_at) if self.swap_at is not None else end
        settled = self.at(self.settled_at) if self.settled_at is not None else end
        self.windows = (before_swap - start, end - settled)
        steady = sum(max(0.0, growth) for growth in self.windows)
        bound = max(max_growth_mb, start * max_growth_pct / 100)
        judged = self.swap_at is not None and self.settled_at is not None
        return {
            "rss_start_mb": start,
            "rss_end_mb": end,
            "swap_mb": settled - before_swap,
            "steady_growth_mb": steady,
            "growth_bound_mb": bound,
            "memory_flat": float(judged and steady <= bound),
            "rss_peak_mb": max(mb for _, mb in self.samples),
            "rss_after_swap_mb": end,
        }


def start_server(args: argparse.Namespace, store: Path, keys: Path, port: int) -> subprocess.Popen[bytes]:
    if args.model is None:
        return subprocess.Popen(
            [sys.executable, __file__, "--serve", str(store), str(keys), str(port), str(args.grace_s)]
        )
    env = {
        **os.environ,
        "SYNTHNER_NER_API_PORT": str(port),
        "SYNTHNER_NER_API_AUTH_MODE": "api_keys",
        "SYNTHNER_NER_API_API_KEYS_FILE": str(keys),
        "SYNTHNER_NER_API_MODEL_STORE": str(store),
        "SYNTHNER_NER_API_LISTEN_FOR_MODELS": "false",
        "SYNTHNER_NER_API_RATE_LIMIT_PER_S": "0",  # one key sends the whole load: no per-key limit
        "SYNTHNER_NER_API_PREVIOUS_MODEL_GRACE_S": str(args.grace_s),
        "SYNTHNER_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.Popen([sys.executable, "-c", SERVE_WITHOUT_TORCH], env=env)


SERVE_WITHOUT_TORCH = """
import importlib.machinery, runpy, sys


class PathFinderWithoutTorch(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] == "torch" else super().find_spec(name, path, target)


sys.meta_path = [PathFinderWithoutTorch if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
runpy.run_module("synthner_ner_api", run_name="__main__", alter_sys=True)
"""
"""``python -m synthner_ner_api`` as the image runs it: without torch, even where the development environment has it
(transformers imports torch whenever it is installed, which would add its few hundred MB to every figure)."""


@dataclass
class Load:
    """What the clients saw."""

    memory: Memory | None = None
    warmup: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    old_after_swap: int = 0
    swapped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def sent(self) -> int:
        return len(self.latencies) + sum(n for kind, n in self.failures.items() if not kind.isdigit())

    async def client(
        self, client: httpx.AsyncClient, notes: list[str], first: int, step: int, done: Callable[[], bool]
    ) -> None:
        position = first
        while not done():
            note = notes[position % len(notes)]
            position += step
            swapped_before = self.swapped.is_set()
            started = time.perf_counter()
            try:
                response = await client.post("/v1/ner", json={"text": note})
            except httpx.HTTPError as exc:
                self.failures[type(exc).__name__] += 1
                continue
            self.latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                self.failures[str(response.status_code)] += 1
                continue
            version = response.json()["model_version"]
            self.versions[version] += 1
            self.old_after_swap += swapped_before and version == "v1"
            if version == "v2" and self.versions[version] == self.warmup and self.memory is not None:
                self.memory.settled_at = self.memory.now()

    async def swap(self, client: httpx.AsyncClient, store: Path, model: Path | None, after_s: float) -> None:
        assert self.memory is not None
        await asyncio.sleep(after_s)
        self.memory.swap_at = self.memory.now()
        install_version(store, "v2", model)
        response = await client.post("/v1/admin/reload", json={}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        response.raise_for_status()
        assert response.json()["version"] == "v2", response.text
        self.swapped.set()

    def line(self, memory: dict[str, float]) -> str:
        failed = sum(self.failures.values()) + self.old_after_swap
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000
        served = ",".join(f"{v}:{n}" for v, n in sorted(self.versions.items()))
        figures = " ".join(
            f"{name}={value:.0f}" if name == "memory_flat" else f"{name}={value:.1f}" for name, value in memory.items()
        )
        return (
            f"requests={self.sent} failed={failed} p50_ms={p50:.1f} p99_ms={p99:.1f} "
            f"{figures} swapped={int(self.swapped.is_set())} versions={served}"
        )


async def drive(args: argparse.Namespace, store: Path, port: int, server: subprocess.Popen[bytes]) -> str:
    notes = load_notes(args.notes)
    clients = range(args.clients)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        timeout=60,
        headers={"Authorization": f"Bearer {USER_KEY}"},
        limits=httpx.Limits(max_connections=args.clients),
    ) as client:
        await wait_ready(client, server, timeout_s=120)
        warm = Load()  # the same clients until v1 has answered --warmup requests; only its failures count
        await asyncio.gather(
            *(warm.client(client, notes, i, args.clients, lambda: warm.sent >= args.warmup) for i in clients)
        )
        memory, stop = Memory(server.pid), asyncio.Event()
        load = Load(memory=memory, warmup=args.warmup, failures=warm.failures)
        sampler = asyncio.create_task(memory.sample(stop))
        stop_at = memory.started + args.duration
        await asyncio.gather(
            load.swap(client, store, args.model, args.duration / 2),
            *(load.client(client, notes, i, args.clients, lambda: time.monotonic() >= stop_at) for i in clients),
        )
        stop.set()
        await sampler
        memory.samples.append((memory.now(), rss_mb(server.pid)))
    if load.failures:
        print(f"failures: {dict(load.failures)}")
    if load.old_after_swap:
        print(f"{load.old_after_swap} requests sent after the swap were answered by v1")
    model = "lexicon" if args.model is None else "real"
    rps = len(load.latencies) / args.duration
    print(f"model={model} clients={args.clients} duration_s={args.duration:g} warmup={args.warmup} rps={rps:.0f}")
    figures = memory.figures(args.max_growth_mb, args.max_growth_pct)
    v1_window, v2_window = memory.windows
    print(f"memory: {v1_window:+.1f} MB while v1 served, {v2_window:+.1f} MB after v2's warm-up")
    if memory.swap_at is not None and memory.now() < memory.swap_at + args.grace_s:
        print(f"rss_after_swap_mb is not after the grace period: run longer than twice --grace-s {args.grace_s:g}")
    if memory.settled_at is None:
        print(f"memory not judged: v2 answered fewer than {args.warmup} requests before the end (run longer)")
    elif not figures["memory_flat"]:
        print(
            f"memory not flat: grew {figures['steady_growth_mb']:.1f} MB while one version served "
            f"(bound {figures['growth_bound_mb']:.1f} MB)"
        )
    return load.line(figures)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve_lexicon(Path(argv[1]), Path(argv[2]), int(argv[3]), float(argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    parser.add_argument("--model", type=Path, default=None, help="a real token-classification folder to serve")
    parser.add_argument(
        "--warmup", type=int, default=200, help="requests each version answers before memory is measured (default 200)"
    )
    parser.add_argument("--notes", type=Path, default=NOTES, help="JSONL documents whose texts are sent")
    parser.add_argument(
        "--grace-s",
        type=float,
        default=5.0,
        help="seconds the server keeps the previous version loaded after the swap (default 5; the service's is 300)",
    )
    parser.add_argument(
        "--max-growth-mb", type=float, default=32.0, help="resident-memory growth allowed while one version serves"
    )
    parser.add_argument(
        "--max-growth-pct", type=float, default=5.0, help="the same bound as a share of the start (the larger wins)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "models"
        install_version(store, "v1", args.model)
        keys = write_key_file(Path(folder) / "keys")
        port = free_port()
        server = start_server(args, store, keys, port)
        try:
            line = asyncio.run(drive(args, store, port, server))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    print(line)
    return 0 if " failed=0 " in line and "swapped=1" in line and "memory_flat=1" in line else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
