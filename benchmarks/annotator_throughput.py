"""Annotator throughput against an OpenAI-compatible server that answers after a fixed latency.

The server (this script with ``--serve``, in its own process) answers every chat completion after ``L`` seconds with
the JSON mention list of the note. The annotator path under test is the service's handler: prompt, ``openai``
client, parsing, alignment and the ``DocumentAnnotated`` message, with ``C`` notes in flight and the endpoint's
concurrency set to ``C``. The best possible rate is ``C / L`` documents per second. For scale, the bare ``openai``
SDK against the same server is measured first (``sdk_ratio``): on a loaded machine it, not the annotator, sets the
ceiling. Last line: ``ratio=<docs/s ÷ (C/L)>``.

    python benchmarks/annotator_throughput.py [--latency 0.5 --concurrency 16 --documents 320]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import openai

from synthner_annotator.backends.llm import LLMAnnotator, LLMAnnotatorSettings
from synthner_annotator.endpoint import EndpointSettings
from synthner_annotator.handler import make_handler
from synthner_annotator.testing import lexicon_oracle, openai_compatible_server
from synthner_shared.testing import sample_note

TERMS = {"hypertension": "Disease", "diabetes": "Disease", "metformin": "Drug", "aspirin": "Drug"}
LABELS = ["Disease", "Drug"]


async def serve(latency_s: float) -> None:
    async with openai_compatible_server(lexicon_oracle(TERMS), latency_s=latency_s) as server:
        print(server.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin


async def measure_sdk_alone(base_url: str, concurrency: int, documents: int) -> float:
    """The bare ``openai`` SDK against the same server: the ceiling any annotator built on it can reach here."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0)
    slots = asyncio.Semaphore(concurrency)
    notes = [sample_note(seed, words=120).text for seed in range(documents)]

    async def one(index: int) -> None:
        async with slots:
            await client.chat.completions.create(model="bench", messages=[{"role": "user", "content": notes[index]}])

    try:
        await asyncio.gather(*(one(i) for i in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(documents)))
        return documents / (time.perf_counter() - started)
    finally:
        await client.close()


async def measure(base_url: str, latency_s: float, concurrency: int, documents: int) -> float:
    endpoint = EndpointSettings(
        base_url=base_url, model="bench", external=False, max_concurrency=concurrency, timeout_s=60
    )
    annotator = LLMAnnotator(LLMAnnotatorSettings(endpoint=endpoint), LABELS)
    handle = make_handler(annotator, LABELS, "bench", 1_000_000)
    notes = [sample_note(seed, words=120) for seed in range(documents)]
    slots = asyncio.Semaphore(concurrency)

    async def one(note_index: int) -> int:
        async with slots:
            [document] = await handle(notes[note_index % len(notes)])
            return 1 if document.type == "DocumentAnnotated" else 0

    try:
        await asyncio.gather(*(one(i) for i in range(concurrency)))  # warm-up: open the connections
        started = time.perf_counter()
        annotated = sum(await asyncio.gather(*(one(i) for i in range(documents))))
        elapsed = time.perf_counter() - started
    finally:
        await annotator.aclose()
    assert annotated == documents, f"only {annotated} of {documents} documents were annotated"
    usage = annotator.usage()["llm"]
    print(f"{documents} documents in {elapsed:.2f}s, {usage['requests']:.0f} requests, {usage['retries']:.0f} retries")
    return documents / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.5, help="server latency L in seconds (default 0.5)")
    parser.add_argument("--concurrency", type=int, default=16, help="notes in flight C (default 16)")
    parser.add_argument("--documents", type=int, default=320, help="documents to annotate (default 320)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.latency))
        return 0
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        sdk_rate = asyncio.run(measure_sdk_alone(base_url, args.concurrency, args.documents))
        rate = asyncio.run(measure(base_url, args.latency, args.concurrency, args.documents))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    ideal = args.concurrency / args.latency
    print(f"bare openai SDK, same server: {sdk_rate:.1f} requests/s (sdk_ratio={sdk_rate / ideal:.3f})")
    print(f"L={args.latency}s C={args.concurrency}: {rate:.1f} documents/s, ideal {ideal:.1f}")
    print(f"ratio={rate / ideal:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
