"""Dynamic micro-batching across concurrent requests.

Requests queue up as jobs (one text, or all texts of a batch request). A single worker takes the first job, waits at
most ``max_wait_s`` for more until ``max_texts`` texts are collected, sorts the texts by length (so the predictor pads
little) and runs one model call in a worker thread. Each job is answered by the model version current when its batch
started; a job is never split across versions.

The queue is bounded: at most ``max_queued_texts`` texts wait for the model (jobs the worker has not taken yet); a
job that would go over is refused at once with :class:`QueueFull` (the API answers 503 with ``Retry-After``). A job
whose caller stopped waiting (its request timed out, or its client disconnected: the awaiting task is cancelled) is
dropped from the queue and never reaches the model; its texts no longer count against the bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from synthner_ner_api.models import LoadedModel, SpanPrediction

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """More texts are waiting for the model than the queue admits; the caller should retry later."""


@dataclass
class _Job:
    texts: Sequence[str]
    future: asyncio.Future[tuple[str, list[list[SpanPrediction]]]]
    taken: bool = False
    """Taken off the queue by the worker (its texts no longer count as queued)."""


BatchObserver = Callable[[int], None]


class MicroBatcher:
    def __init__(
        self,
        current_model: Callable[[], LoadedModel | None],
        *,
        max_texts: int,
        max_wait_s: float,
        on_batch: BatchObserver | None = None,
        max_queued_texts: int | None = None,
        on_dropped: BatchObserver | None = None,
    ) -> None:
        self._current_model = current_model
        self._max_texts = max_texts
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._max_queued_texts = max_queued_texts
        self._on_dropped = on_dropped
        self.queued_texts = 0
        """Texts waiting for the worker (cancelled jobs excluded)."""
        self.dropped_texts = 0
        """Texts whose callers stopped waiting before the worker took them: never sent to the model."""
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
        """Spans for each text and the model version that produced them. :class:`QueueFull` when the queue has no
        room for ``texts``; cancelling the caller drops the job if the worker has not taken it yet."""
        limit = self._max_queued_texts
        if limit is not None and self.queued_texts + len(texts) > limit:
            raise QueueFull(f"{self.queued_texts} texts are waiting for the model (at most {limit})")
        future: asyncio.Future[tuple[str, list[list[SpanPrediction]]]] = asyncio.get_running_loop().create_future()
        job = _Job(texts, future)
        self.queued_texts += len(texts)
        future.add_done_callback(lambda _: self._release(job))
        self._queue.put_nowait(job)
        return await future

    def _release(self, job: _Job) -> None:
        """A job's future is done: if the worker never took it (the caller was cancelled), free its room now."""
        if job.taken:
            return
        job.taken = True
        self.queued_texts -= len(job.texts)
        self._dropped(job)

    def _dropped(self, job: _Job) -> None:
        self.dropped_texts += len(job.texts)
        if self._on_dropped is not None:
            self._on_dropped(len(job.texts))

    def _still_awaited(self, jobs: list[_Job]) -> list[_Job]:
        """``jobs`` less those whose callers were cancelled after the worker took them (while the batch filled)."""
        for job in jobs:
            if job.future.done():
                self._dropped(job)
        return [job for job in jobs if not job.future.done()]

    async def _next_job(self, within_s: float | None = None) -> _Job:
        """The next job whose caller still waits (cancelled ones are skipped), marked taken; ``TimeoutError`` or
        ``QueueEmpty`` when none comes ``within_s``."""
        loop = asyncio.get_running_loop()
        deadline = None if within_s is None else loop.time() + within_s
        while True:
            if deadline is None:
                job = await self._queue.get()
            else:
                remaining = deadline - loop.time()
                job = (
                    self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
                )
            if job.future.done():
                continue  # cancelled while queued: already released
            job.taken = True
            self.queued_texts -= len(job.texts)
            return job

    async def _collect(self) -> list[_Job]:
        jobs = [await self._next_job()]
        count = len(jobs[0].texts)
        deadline = asyncio.get_running_loop().time() + self._max_wait_s
        while count < self._max_texts:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                job = await self._next_job(max(0.0, remaining))
            except (TimeoutError, asyncio.QueueEmpty):
                break
            jobs.append(job)
            count += len(job.texts)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            jobs = self._still_awaited(jobs)
            if not jobs:
                continue
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
