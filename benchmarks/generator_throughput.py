"""Generator throughput: a job end to end through RabbitMQ against a local LLM server with fixed latency.

The local server (``python -m synthner_generator.testing``, a real HTTP server on 127.0.0.1, in its own process as
an LLM server would be) answers every request after exactly L seconds and never queues, so a client that keeps C
requests in flight can at best reach C/L notes per second. The generator service (its real consumer runner, job
splitting, quality filters, dedup and leak gate) gets one job of N notes; the clock runs from submitting the job to
the N-th NoteGenerated on the annotator queue. The last line is ``ratio=<notes/s / (C/L)>`` (goal >= 0.9).

    python benchmarks/generator_throughput.py --latency 2 --concurrency 16 --notes 320 [--backend tgi]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from synthner_generator.service import build_generator, generator_service
from synthner_generator.testing import sample_job, settings_for
from synthner_shared.messaging import ANNOTATOR, BrokerSettings, Topology
from synthner_shared.testing import publish_once, running_service


async def start_server(latency: float) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "synthner_generator.testing", "--latency", str(latency), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
    if not line.startswith("PORT "):
        raise RuntimeError("the local LLM server did not start")
    return process, f"http://127.0.0.1:{int(line.split()[1])}"


async def run(latency: float, concurrency: int, notes: int, backend: str, part_size: int) -> float:
    broker = BrokerSettings(namespace=f"bench-gen-{uuid.uuid4().hex[:10]}", prefetch=8)
    topology = Topology.from_settings(broker)
    connection = await aio_pika.connect(broker.url.get_secret_value())
    received = 0
    done = asyncio.Event()

    async def count(message: AbstractIncomingMessage) -> None:
        nonlocal received
        await message.ack()
        received += 1
        if received == notes:
            done.set()

    try:
        channel = await connection.channel()
        await topology.declare_shared(channel)
        await (await channel.get_queue(topology.queue_name(ANNOTATOR))).consume(count)
        process, url = await start_server(latency)
        try:
            with tempfile.TemporaryDirectory() as state:
                settings = settings_for(
                    url,
                    Path(state),
                    backend=backend,
                    concurrency=concurrency,
                    part_size=part_size,
                    endpoint_url=url if backend == "tgi" else f"{url}/v1",
                    min_chars=50,
                )
                async with (
                    build_generator(settings) as generator,
                    running_service(generator_service(broker, settings, generator)),
                ):
                    started = time.perf_counter()
                    await publish_once(broker, sample_job(job_id="bench", count=notes, seed=1))
                    await asyncio.wait_for(done.wait(), timeout=600)
                    elapsed = time.perf_counter() - started
        finally:
            process.terminate()
            await process.wait()
    finally:
        await topology.delete(await connection.channel())
        await connection.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=2.0, help="L: seconds per LLM request (default 2)")
    parser.add_argument("--concurrency", type=int, default=16, help="C: requests kept in flight (default 16)")
    parser.add_argument("--notes", type=int, default=320, help="N: notes in the job (default 320)")
    parser.add_argument("--backend", choices=("openai", "tgi"), default="openai")
    parser.add_argument("--part-size", type=int, default=16, help="notes per part (default 16)")
    args = parser.parse_args(argv)
    elapsed = asyncio.run(run(args.latency, args.concurrency, args.notes, args.backend, args.part_size))
    rate = args.notes / elapsed
    ideal = args.concurrency / args.latency
    print(f"backend={args.backend} L={args.latency}s C={args.concurrency} N={args.notes} part_size={args.part_size}")
    print(f"elapsed={elapsed:.2f}s")
    print(f"notes_per_s={rate:.2f} ideal_C_over_L={ideal:.2f}")
    print(f"ratio={rate / ideal:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
