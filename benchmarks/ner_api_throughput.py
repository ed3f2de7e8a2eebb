"""NER API speed against the transformers pipeline, on the same documents and weights, in one run.

Variants:
- ``pipeline``: ``transformers.pipeline("token-classification", aggregation_strategy="simple")``, batch 8;
- ``ours-fp32`` / ``ours-int8``: the NER API's serving predictor in process, as served: the model folder's shipped
  ``model.onnx`` / ``model.int8.onnx`` on ONNX Runtime (the trainer writes them; the folder must have them);
- ``torch-fp32`` / ``torch-int8``: the same tagger on eager torch (``runtime="torch"``), for comparison
  (``--no-torch`` skips them);
- ``http-fp32`` / ``http-int8``: ``python -m synthner_ner_api`` in a subprocess on 127.0.0.1, hit by concurrent
  clients posting one document each (so the micro-batcher has company to batch).

For each: documents/s (the in-process variants timed in turn, 32 documents at a time, so a machine's changing load
weighs on all alike), entity agreement with the pipeline (Jaccard of character spans) and strict F1 against the
file's gold entities; plus p50/p95 latency of a single 2,000-character note. The CPU's model, cores and the flags
that decide the kernels (AVX2, AVX-512, VNNI, AMX) are printed first. The last line is
``ratio_fp32=… ratio_int8=… f1_drop_int8=…`` (ratios of in-process docs/s to the pipeline; F1 drop in 0-1), with
``f1_cost=…`` after them when ``--baseline-model`` runs the pipeline on another folder (``full-fp32``, that folder
served as we serve it, has strict F1 higher by this much than ``ours-fp32``: what a shallower, distilled ``--model``
costs against the full-depth one it replaces).

On a shared VM one process's int8 speed can move by a third from one start to the next (thread placement, caches):
``--repeats N`` runs the whole measurement in N fresh processes, one after the other, prints each run's last line
and ends with the median of every figure, then the int8 ratio's range: ``… ratio_int8_min=… ratio_int8_max=…
repeats=N``.

    python benchmarks/ner_api_throughput.py --model DIR [--baseline-model DIR] [--docs FILE] [--count 500]
        [--threads N] [--no-http] [--no-torch] [--repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from synthner_ner_api.predictor import ServingPredictor
from synthner_shared.documents import Document, DocumentEntity, read_documents
from synthner_shared.evaluation import evaluate_spans
from synthner_shared.ner.onnx import ONNX_FILE, ONNX_INT8_FILE
from synthner_shared.offline import stay_offline

Spans = list[tuple[int, int, str]]
DEFAULT_DOCS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ncbi_disease" / "train.jsonl"


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The /proc/cpuinfo flags that decide which kernels ONNX Runtime and torch run (int8 dot products: VNNI, AMX)."""


def cpu_line() -> str:
    """``cpu=… cores=… flags=…`` from /proc/cpuinfo (Linux), for the figures to say what they were measured on."""
    info = Path("/proc/cpuinfo")
    text = info.read_text() if info.is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    present = [flag for flag in CPU_FLAGS if flag in flags]
    return f"cpu={model!r} cores={os.cpu_count()} flags={','.join(present) or 'none of ' + ','.join(CPU_FLAGS)}"


def as_documents(gold: Sequence[Document], predicted: Sequence[Spans]) -> list[Document]:
    return [
        Document(id=d.id, text=d.text, entities=[DocumentEntity(start=s, end=e, label=label) for s, e, label in p])
        for d, p in zip(gold, predicted, strict=True)
    ]


def strict_f1(gold: Sequence[Document], predicted: Sequence[Spans]) -> float:
    return evaluate_spans(gold, as_documents(gold, predicted), "benchmark").strict_micro.f1


def agreement(a: Sequence[Spans], b: Sequence[Spans]) -> float:
    both = sum(len(set(x) & set(y)) for x, y in zip(a, b, strict=True))
    either = sum(len(set(x) | set(y)) for x, y in zip(a, b, strict=True))
    return both / either if either else 1.0


def run_pipeline(model: Path, texts: Sequence[str]) -> Callable[[Sequence[str]], list[Spans]]:
    from transformers import pipeline  # noqa: PLC0415

    tagger = pipeline("token-classification", model=str(model), aggregation_strategy="simple", device="cpu")

    def predict(batch: Sequence[str]) -> list[Spans]:
        results = tagger(list(batch), batch_size=8)
        return [[(int(e["start"]), int(e["end"]), str(e["entity_group"])) for e in doc] for doc in results]

    return predict


def run_ours(predictor: ServingPredictor) -> Callable[[Sequence[str]], list[Spans]]:
    def predict(batch: Sequence[str]) -> list[Spans]:
        return [[(s.start, s.end, s.label) for s in doc] for doc in predictor.annotate(batch)]

    return predict


def timed_together(
    variants: dict[str, Callable[[Sequence[str]], list[Spans]]], texts: Sequence[str], chunk: int = 32
) -> tuple[dict[str, float], dict[str, list[Spans]]]:
    """Documents/s and outputs of every variant, timed chunk by chunk in turn: on a machine shared with other work,
    a load that comes and goes then weighs on every variant alike instead of on whichever ran at the time."""
    seconds = dict.fromkeys(variants, 0.0)
    outputs: dict[str, list[Spans]] = {name: [] for name in variants}
    for predict in variants.values():
        predict(texts[:2])  # warm-up
    for offset in range(0, len(texts), chunk):
        for name, predict in variants.items():
            started = time.perf_counter()
            outputs[name].extend(predict(texts[offset : offset + chunk]))
            seconds[name] += time.perf_counter() - started
    return {name: len(texts) / spent for name, spent in seconds.items()}, outputs


def latency(predict: Callable[[Sequence[str]], list[Spans]], note: str, repeats: int = 30) -> tuple[float, float]:
    predict([note])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict([note])
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def over_http(
    model: Path, texts: Sequence[str], int8: bool, gold_file: Path, clients: int
) -> tuple[float, list[Spans]]:
    port = free_port()
    env = {
        **os.environ,
        "SYNTHNER_NER_API_PORT": str(port),
        "SYNTHNER_NER_API_MODEL_DIR": str(model),
        "SYNTHNER_NER_API_AUTH_MODE": "trusted_proxy",
        "SYNTHNER_NER_API_LISTEN_FOR_MODELS": "false",
        "SYNTHNER_NER_API_RATE_LIMIT_PER_S": "0",  # one proxy user sends the whole load: no per-user limit
        "SYNTHNER_NER_API_INT8": "true" if int8 else "false",
        "SYNTHNER_NER_API_INT8_GATE_GOLD": str(gold_file),
        "SYNTHNER_NER_API_INT8_MAX_F1_DROP": "1.0",  # the benchmark measures int8 whatever its F1 (reported below)
        "SYNTHNER_NER_API_INT8_ONLY_IF_FASTER": "false",  # and whatever its speed
        "SYNTHNER_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([sys.executable, "-m", "synthner_ner_api"], env=env)  # noqa: ASYNC220 - started once
    headers = {"X-Authenticated-User": "benchmark"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, headers=headers) as client:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the NER API did not become ready")
                await asyncio.sleep(0.2)
            results: list[Spans] = [[] for _ in texts]
            queue: asyncio.Queue[int] = asyncio.Queue()
            for index in range(len(texts)):
                queue.put_nowait(index)

            async def worker() -> None:
                while not queue.empty():
                    index = queue.get_nowait()
                    reply = await client.post("/v1/ner", json={"text": texts[index]})
                    reply.raise_for_status()
                    results[index] = [(e["start"], e["end"], e["label"]) for e in reply.json()["entities"]]

            await client.post("/v1/ner", json={"text": texts[0]})
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            return len(texts) / (time.perf_counter() - started), results
    finally:
        server.terminate()
        server.wait(timeout=60)


def figures(line: str) -> dict[str, float]:
    """The ``key=value`` figures of a last line."""
    return {key: float(value) for key, value in (item.split("=", 1) for item in line.split())}


def repeated(argv: list[str], repeats: int) -> None:
    """The measurement run ``repeats`` times, each in a fresh process; prints the medians and the int8 range."""
    runs: list[dict[str, float]] = []
    for run in range(1, repeats + 1):
        child = subprocess.run(
            [sys.executable, __file__, *argv, "--repeats", "1"], capture_output=True, text=True, check=False
        )
        if child.returncode != 0:
            sys.stderr.write(child.stderr)
            raise SystemExit(f"run {run} of {repeats} failed (exit {child.returncode})")
        last = child.stdout.strip().splitlines()[-1]
        print(f"run {run}: {last}", flush=True)
        runs.append(figures(last))
    medians = " ".join(
        f"{key}={statistics.median(r[key] for r in runs):.{2 if key.startswith('ratio') else 4}f}" for key in runs[0]
    )
    int8 = [r["ratio_int8"] for r in runs]
    print(f"{medians} ratio_int8_min={min(int8):.2f} ratio_int8_max={max(int8):.2f} repeats={repeats}")


def main(argv: list[str]) -> None:
    stay_offline()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="token-classification model folder")
    parser.add_argument(
        "--baseline-model",
        type=Path,
        help="the folder the pipeline runs (default: --model); e.g. the full-depth model a shallower --model was"
        " distilled from, so the ratios are against what it replaces and f1_cost says what the speed costs",
    )
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="gold JSONL file (default NCBI-disease train)")
    parser.add_argument("--count", type=int, default=500, help="documents to annotate (default 500)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch/ONNX Runtime threads (default: all cores)")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP variants")
    parser.add_argument("--no-torch", action="store_true", help="skip the eager-torch variants")
    parser.add_argument(
        "--repeats", type=int, default=1, help="run the measurement in N fresh processes; report medians (default 1)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    missing = [name for name in (ONNX_FILE, ONNX_INT8_FILE) if not (args.model / name).is_file()]
    if missing:
        parser.error(f"{args.model} ships no {', '.join(missing)}: train it with the current trainer")
    print(cpu_line(), flush=True)
    if args.repeats > 1:
        repeated(argv, args.repeats)
        return

    gold = list(read_documents(args.docs))[: args.count]
    texts = [d.text for d in gold]
    note = (" ".join(texts))[:2000]
    print(f"{len(texts)} documents from {args.docs.name}, {sum(map(len, texts)) / len(texts):.0f} characters each")

    fp32 = ServingPredictor.load_for_serving(args.model, threads=args.threads)
    variants = {
        "pipeline": run_pipeline(args.baseline_model or args.model, texts),
        "ours-fp32": run_ours(fp32),
        "ours-int8": run_ours(fp32.variant(int8=True)),
    }
    if args.baseline_model:  # the full-depth model as we serve it: the same decoder, so F1s compare
        variants["full-fp32"] = run_ours(ServingPredictor.load_for_serving(args.baseline_model, threads=args.threads))
    if not args.no_torch:
        torch_fp32 = ServingPredictor.load_for_serving(args.model, threads=args.threads, runtime="torch")
        variants["torch-fp32"] = run_ours(torch_fp32)
        variants["torch-int8"] = run_ours(torch_fp32.variant(int8=True))
    rates, outputs = timed_together(variants, texts)
    for name, predict in variants.items():
        p50, p95 = latency(predict, note)
        print(
            f"{name:10s} {rates[name]:7.1f} docs/s  strict F1 {strict_f1(gold, outputs[name]):.4f}  "
            f"agreement with pipeline {agreement(outputs[name], outputs['pipeline']):.3f}  "
            f"2000-char note p50 {p50:.1f} ms p95 {p95:.1f} ms",
            flush=True,
        )
    if not args.no_http:
        with tempfile.TemporaryDirectory():
            for name, quantized in (("http-fp32", False), ("http-int8", True)):
                rate, out = asyncio.run(over_http(args.model, texts, quantized, args.docs, args.clients))
                rates[name], outputs[name] = rate, out
                print(
                    f"{name:10s} {rate:7.1f} docs/s  strict F1 {strict_f1(gold, out):.4f}  "
                    f"agreement with pipeline {agreement(out, outputs['pipeline']):.3f}  ({args.clients} clients)",
                    flush=True,
                )
    f1_fp32 = strict_f1(gold, outputs["ours-fp32"])
    f1_int8 = strict_f1(gold, outputs["ours-int8"])
    cost = f" f1_cost={strict_f1(gold, outputs['full-fp32']) - f1_fp32:.4f}" if args.baseline_model else ""
    print(
        f"ratio_fp32={rates['ours-fp32'] / rates['pipeline']:.2f} "
        f"ratio_int8={rates['ours-int8'] / rates['pipeline']:.2f} f1_drop_int8={f1_fp32 - f1_int8:.4f}{cost}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
