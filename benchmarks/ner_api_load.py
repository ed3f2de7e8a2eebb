"""Load on the NER API with a model swap in the middle: concurrent clients for a bounded time, loopback only.

The API runs in its own process (uvicorn on 127.0.0.1, a free port) over a model store holding version ``v1``.
``--clients`` HTTP clients post one note each per request to ``/v1/ner`` for ``--duration`` seconds; half-way, a
new version ``v2`` is written into the store and ``POST /v1/admin/reload`` swaps it in under load. Every request
must succeed (200, answered wholly by one version); after the swap only ``v2`` may answer.

The model is the lexicon test predictor (``synthner_ner_api.testing``: no torch, so the figures are the HTTP layer,
the micro-batcher and the swap), or with ``--model DIR`` a real token-classification folder (e.g. one trained by
``synthner train``), served by ``python -m synthner_ner_api`` itself and copied as both versions.

Notes are NCBI-disease texts from ``../shared/data`` when present, else generated sample text. Resident memory of the
server process is read from ``/proc`` after the warm-up and at the end. The last line is
``requests=… failed=… p50_ms=… p99_ms=… rss_start_mb=… rss_end_mb=… swapped=0|1 versions=v1:…,v2:…``.

    python benchmarks/ner_api_load.py [--duration 60] [--clients 8] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
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
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from synthner_ner_api.testing import ADMIN_KEY, LEXICON, USER_KEY, write_key_file, write_model
from synthner_shared.documents import read_documents
from synthner_shared.testing import sample_note

NOTES = Path(__file__).resolve().parents[2] / "shared" / "data" / "ncbi_disease" / "dev.jsonl"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_lexicon(store: Path, keys: Path, port: int) -> None:
    """Server mode (run in the child process): the NER API with the lexicon loader over ``store``."""
    import uvicorn  # noqa: PLC0415

    from synthner_ner_api.app import create_app  # noqa: PLC0415
    from synthner_ner_api.models import ModelRegistry  # noqa: PLC0415
    from synthner_ner_api.settings import NerApiSettings  # noqa: PLC0415
    from synthner_ner_api.testing import load_lexicon_model  # noqa: PLC0415
    from synthner_shared.logs import configure_logging  # noqa: PLC0415

    configure_logging("WARNING")
    settings = NerApiSettings(auth_mode="api_keys", api_keys_file=keys, model_store=store, listen_for_models=False)
    app = create_app(settings, ModelRegistry(load_lexicon_model, store=store))
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


def load_notes() -> list[str]:
    if NOTES.is_file():
        return [d.text for d in read_documents(NOTES)][:200]
    return [sample_note(seed, words=120).text for seed in range(200)]


async def wait_ready(client: httpx.AsyncClient, server: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the NER API exited with {server.returncode} before it was ready")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the NER API was not ready in time")


def start_server(args: argparse.Namespace, store: Path, keys: Path, port: int) -> subprocess.Popen[bytes]:
    if args.model is None:
        return subprocess.Popen([sys.executable, __file__, "--serve", str(store), str(keys), str(port)])
    env = {
        **os.environ,
        "SYNTHNER_NER_API_PORT": str(port),
        "SYNTHNER_NER_API_AUTH_MODE": "api_keys",
        "SYNTHNER_NER_API_API_KEYS_FILE": str(keys),
        "SYNTHNER_NER_API_MODEL_STORE": str(store),
        "SYNTHNER_NER_API_LISTEN_FOR_MODELS": "false",
        "SYNTHNER_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.Popen([sys.executable, "-m", "synthner_ner_api"], env=env)


@dataclass
class Load:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    old_after_swap: int = 0
    swapped: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, client: httpx.AsyncClient, notes: list[str], first: int, step: int, stop_at: float) -> None:
        position = first
        while time.monotonic() < stop_at:
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

    async def swap(self, client: httpx.AsyncClient, store: Path, model: Path | None, after_s: float) -> None:
        await asyncio.sleep(after_s)
        install_version(store, "v2", model)
        response = await client.post("/v1/admin/reload", json={}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        response.raise_for_status()
        assert response.json()["version"] == "v2", response.text
        self.swapped.set()

    def line(self, rss_start: float, rss_end: float) -> str:
        transport_failures = sum(n for kind, n in self.failures.items() if not kind.isdigit())
        failed = sum(self.failures.values()) + self.old_after_swap
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000
        served = ",".join(f"{v}:{n}" for v, n in sorted(self.versions.items()))
        return (
            f"requests={len(ordered) + transport_failures} failed={failed} p50_ms={p50:.1f} p99_ms={p99:.1f} "
            f"rss_start_mb={rss_start:.1f} rss_end_mb={rss_end:.1f} swapped={int(self.swapped.is_set())} "
            f"versions={served}"
        )


async def drive(args: argparse.Namespace, store: Path, port: int, server: subprocess.Popen[bytes]) -> str:
    notes = load_notes()
    load = Load()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        timeout=60,
        headers={"Authorization": f"Bearer {USER_KEY}"},
        limits=httpx.Limits(max_connections=args.clients),
    ) as client:
        await wait_ready(client, server)
        for note in notes[:20]:  # warm-up
            (await client.post("/v1/ner", json={"text": note})).raise_for_status()
        rss_start = rss_mb(server.pid)
        stop_at = time.monotonic() + args.duration
        await asyncio.gather(
            load.swap(client, store, args.model, args.duration / 2),
            *(load.client(client, notes, i, args.clients, stop_at) for i in range(args.clients)),
        )
        rss_end = rss_mb(server.pid)
    if load.failures:
        print(f"failures: {dict(load.failures)}")
    if load.old_after_swap:
        print(f"{load.old_after_swap} requests sent after the swap were answered by v1")
    model = "lexicon" if args.model is None else "real"
    rps = len(load.latencies) / args.duration
    print(f"model={model} clients={args.clients} duration_s={args.duration:g} rps={rps:.0f}")
    return load.line(rss_start, rss_end)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve_lexicon(Path(argv[1]), Path(argv[2]), int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    parser.add_argument("--model", type=Path, default=None, help="a real token-classification folder to serve")
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
    return 0 if " failed=0 " in line and "swapped=1" in line else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
