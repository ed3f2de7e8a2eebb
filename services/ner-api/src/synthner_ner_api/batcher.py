"""Dynamic micro-batching across concurrent requests.

Requests queue up as jobs (one text, or all texts of a batch request). A single worker takes the first job, waits at
most ``max_wait_s`` for more until ``max_texts`` texts are collected, sorts the texts by length (so the predictor pads
little) and runs one model call in a worker thread. Each job is answered by the model version current when its batch
started; a job is never split across versions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from synthner_ner_api.models import LoadedModel, SpanPrediction

log = logging.getLogger(__name__)


@dataclass
class _Job:
    texts: Sequence[str]
    future: asyncio.Future[tuple[str, list[list[SpanPrediction]]]]


BatchObserver = Callable[[int], None]


class MicroBatcher:
    def __init__(
        self,
        current_model: Callable[[], LoadedModel | None],
        max_texts: int,
        max_wait_s: float,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self._current_model = current_model
        self._max_texts = max_texts
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ner-model")
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="ner-micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the NER service is shutting down"))
        self._executor.shutdown(wait=True)

    async def predict(self, texts: Sequence[str]) -> tuple[str, list[list[SpanPrediction]]]:
        """Spans for each text and the model version that produced them."""
        future: asyncio.Future[tuple[str, list[list[SpanPrediction]]]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(texts, future))
        return await future

    async def _collect(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        count = len(jobs[0].texts)
        deadline = asyncio.get_running_loop().time() + self._max_wait_s
        while count < self._max_texts:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                job = (
                    self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
                )
            except (TimeoutError, asyncio.QueueEmpty):
                break
            jobs.append(job)
            count += len(job.texts)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            model = self._current_model()
            if model is None:
                for job in jobs:
                    job.future.set_exception(RuntimeError("no model is loaded"))
                continue
            texts = [text for job in jobs for text in job.texts]
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            if self._on_batch is not None:
                self._on_batch(len(texts))
            try:
                sorted_results = await loop.run_in_executor(
                    self._executor, model.predictor.annotate, [texts[i] for i in order]
                )
            except Exception as exc:  # noqa: BLE001 - a model failure answers the waiting requests, never kills the worker
                log.error("model call failed: %s", type(exc).__name__)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            results: list[list[SpanPrediction]] = [[] for _ in texts]
            for position, index in enumerate(order):
                results[index] = sorted_results[position]
            offset = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result((model.version, results[offset : offset + len(job.texts)]))
                offset += len(job.texts)
