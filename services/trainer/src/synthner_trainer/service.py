"""The trainer service: consumes ``DocumentAnnotated``, ``TrainingRequested``, ``AdaptationRequested`` and
``ModelRollbackRequested``; runs one job (a token-classifier training or a generator adaptation) at a time.

- A document is written to the dataset store (durably, de-duplicated by ``note_id``) before the handler returns,
  so the runner acks only after the write.
- A training request is stored, acked, and served by one worker task that runs the training in a thread: the event
  loop keeps consuming documents meanwhile, and only one training runs at a time. Requests wait in the store, so
  one acked before a crash runs after the restart. Every ``train_every`` new documents the service enqueues a
  request itself.
- A published version is announced with ``ModelPublished`` (publisher confirms); a rejected one only in the logs and
  its ``status.json``.
- A rollback request is served at once, as the model store's one writer: the named published version becomes current
  and is pinned there (who, why, when), and ``ModelRolledBack`` is announced, which every NER API replica follows. A
  version that cannot be served is dead-lettered with the reason. ``ModelPinReleaseRequested`` releases the pin.
- One trainer works at a time: a replica consumes and trains only while it holds the trainer lease (an exclusive
  queue on the broker, :mod:`synthner_shared.messaging.lease`); a second replica waits for it instead of racing.
- An adaptation request names a notes file in the trainer's notes folder (real notes never travel on the broker);
  it is queued with the trainings, and its adapted model is announced with ``GeneratorAdapted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from synthner_shared.contracts import (
    AdaptationRequested,
    DocumentAnnotated,
    Envelope,
    GeneratorAdapted,
    ModelPinReleaseRequested,
    ModelRollbackRequested,
    ModelRolledBack,
    TrainingRequested,
)
from synthner_shared.messaging import TRAINER, BrokerSettings, Consumer, PoisonMessageError, PublishError, Service
from synthner_shared.messaging.lease import BrokerLease
from synthner_shared.model_store import ModelStoreError
from synthner_shared.ner.predictor import pick_device
from synthner_shared.observability.metrics import TRAINING
from synthner_trainer.adaptation import discard_staging, run_adaptation_request
from synthner_trainer.pipeline import PRODUCER, TrainingOutcome, run_training_request
from synthner_trainer.registry import ModelRegistry
from synthner_trainer.settings import TrainerSettings
from synthner_trainer.store import DatasetStore, JobRequest, LabelSetError
from synthner_trainer.training import TrainingCancelled

log = logging.getLogger(__name__)
_Result = TypeVar("_Result")

TrainFunction = Callable[
    [TrainingRequested, DatasetStore, ModelRegistry, TrainerSettings, Callable[[], bool]], TrainingOutcome
]
"""Runs one training in a worker thread (the last argument says when to stop): :func:`run_training_request` in
production, a fake in tests."""

AdaptFunction = Callable[[AdaptationRequested, TrainerSettings, Callable[[], bool]], GeneratorAdapted]
"""Runs one generator adaptation in a worker thread: :func:`run_adaptation_request` in production, a fake in tests."""

TrainerMessage = (
    DocumentAnnotated | TrainingRequested | AdaptationRequested | ModelRollbackRequested | ModelPinReleaseRequested
)


def idempotency_key(message: TrainerMessage) -> str:
    """Documents de-duplicate on their content id, requests (training, adaptation) on their message id."""
    return message.note_id if isinstance(message, DocumentAnnotated) else f"request:{message.message_id}"


class TrainerService:
    """Binds the store, the model registry and the training worker to the broker.

    Constructing it opens nothing; :meth:`start` (called by the composition root, :mod:`synthner_trainer.app`, or else
    by :meth:`run`) checks the device and opens the store and the registry."""

    def __init__(
        self,
        settings: TrainerSettings,
        broker_settings: BrokerSettings,
        train: TrainFunction = run_training_request,
        adapt: AdaptFunction = run_adaptation_request,
    ) -> None:
        self.settings = settings
        self._store: DatasetStore | None = None
        self._registry: ModelRegistry | None = None
        self._train = train
        self._adapt = adapt
        accepted = (
            DocumentAnnotated,
            TrainingRequested,
            AdaptationRequested,
            ModelRollbackRequested,
            ModelPinReleaseRequested,
        )
        self.service = Service(
            broker_settings, PRODUCER, [Consumer(TRAINER, accepted, self.handle, idempotency_key=idempotency_key)]
        )
        self._wake = asyncio.Event()
        self._stop_training = threading.Event()
        self.training = asyncio.Event()
        """Set while a training runs (for health and tests)."""
        self.finished = asyncio.Event()
        """Set each time a training ends (successfully or not); waiters clear it."""
        self.outcomes: list[TrainingOutcome] = []
        self.adaptations: list[GeneratorAdapted] = []
        self.lease = BrokerLease(broker_settings, TRAINER.name, holder=PRODUCER)
        """The single-writer lease: only its holder consumes, trains and clears half-written model folders."""
        self._job: asyncio.Future[Any] | None = None

    def start(self) -> None:
        """Check the configured device, open the dataset store and the model registry: the side effects of starting,
        done once (:meth:`run` calls it unless the composition root did). A GPU node without a usable GPU fails here,
        not at its first training. The model folders an earlier crash left half-written are removed by :meth:`run`
        once this replica holds the trainer lease (before that they may be another replica's work in progress)."""
        if self._store is not None:
            return
        pick_device(self.settings.device)
        store = DatasetStore(self.settings.store_path)
        try:
            registry = ModelRegistry(self.settings.models_dir)
        except BaseException:
            store.close()
            raise
        self._store, self._registry = store, registry
        if self.settings.gold is None:
            log.warning(
                "no gold set (SYNTHNER_TRAINER_GOLD): models are published without a quality gate%s",
                " (SYNTHNER_TRAINER_PUBLISH_WITHOUT_GOLD=true)" if self.settings.publish_without_gold else "",
            )

    @property
    def store(self) -> DatasetStore:
        """The dataset store (open once :meth:`start` ran)."""
        if self._store is None:
            raise RuntimeError("the trainer has not started: call start() or run() first")
        return self._store

    @property
    def registry(self) -> ModelRegistry:
        """The model registry (open once :meth:`start` ran)."""
        if self._registry is None:
            raise RuntimeError("the trainer has not started: call start() or run() first")
        return self._registry

    # --- handlers (message in, messages out) ------------------------------------------------------------------------

    async def handle(self, message: TrainerMessage) -> Sequence[Envelope]:
        if isinstance(message, ModelRollbackRequested):
            return [await self.roll_back(message)]
        if isinstance(message, ModelPinReleaseRequested):
            await self.release_pin(message)
            return []
        if isinstance(message, DocumentAnnotated):
            await self.store_document(message)
        else:
            await self.request_training(message)
        return []

    async def roll_back(self, request: ModelRollbackRequested) -> ModelRolledBack:
        """Pin the requested version as the store's current one; the event every NER API replica follows. A version
        that is not there or not published is a poison message (dead-lettered with the reason)."""
        try:
            version, pin = await asyncio.to_thread(
                self.registry.rollback, request.model_version, by=request.requested_by, reason=request.reason
            )
        except (ModelStoreError, KeyError) as exc:
            raise PoisonMessageError(f"cannot roll back: {exc}") from None
        log.warning("rolled the models back to %s (from %s) for %s", pin.version, pin.from_version, pin.by)
        return ModelRolledBack(
            correlation_id=request.correlation_id,
            producer=PRODUCER,
            model_version=version.name,
            from_version=pin.from_version,
            artifact_uri=str(version.path.resolve()),
            requested_by=pin.by,
            reason=pin.reason,
            rolled_back_at=pin.at,
        )

    async def release_pin(self, request: ModelPinReleaseRequested) -> None:
        """Release the rollback's pin: the pinned version stays current, the next published version is served again."""
        released = await asyncio.to_thread(self.registry.release_pin)
        if released is None:
            log.info("no rollback pin to release (asked by %s)", request.requested_by)
            return
        log.warning(
            "released the rollback pin on %s (set by %s) for %s", released.version, released.by, request.requested_by
        )

    async def store_document(self, message: DocumentAnnotated) -> None:
        """Store the document (the store refuses labels outside the trainer's label set: a poison message)."""
        try:
            added = await asyncio.to_thread(self.store.add, message, self.settings.labels)
        except LabelSetError as exc:
            raise PoisonMessageError(str(exc)) from None
        if not added:
            log.info("document %s already stored", message.note_id[:12])
            return
        every = self.settings.train_every
        if every and await asyncio.to_thread(self.store.claim_trigger, every):
            await self.request_training(
                TrainingRequested(correlation_id=f"auto-{message.note_id[:12]}", producer=PRODUCER)
            )

    async def request_training(self, request: JobRequest) -> None:
        if await asyncio.to_thread(self.store.enqueue_request, request):
            kind = "adaptation" if isinstance(request, AdaptationRequested) else "training"
            log.info("%s request %s queued", kind, request.message_id)
        self._wake.set()

    # --- the training worker ----------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            request = await asyncio.to_thread(self.store.next_request)
            if request is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._run_one(request)
            except Exception as exc:  # noqa: BLE001 - the one worker must outlive any job; the job runs again
                # Whatever went wrong around the job (its status not written, say), the request is still pending or
                # running in the store, so it is picked up again; the pause keeps that from spinning.
                log.error("job %s: %s; trying again shortly", request.message_id, f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self.service.broker.settings.reconnect_interval_s)

    async def _run_one(self, request: JobRequest) -> None:
        try:
            if isinstance(request, AdaptationRequested):
                await self._adapt_and_announce(request)
            else:
                await self._train_and_announce(request)
        finally:
            self.finished.set()

    async def _run_job(self, request: JobRequest, kind: str, work: Callable[[], _Result]) -> _Result | None:
        """Run ``work`` in a worker thread as the one job in progress; ``None`` when it was cancelled by shutdown (it
        runs again after the restart) or failed (recorded as the request's status; the worker goes on)."""
        await asyncio.to_thread(self.store.set_request_status, request, "running")
        self.training.set()
        TRAINING.start(request.correlation_id, kind)  # /metrics: the current job and its progress
        outcome = "interrupted"
        try:
            job = asyncio.ensure_future(asyncio.to_thread(work))
            self._job = job  # the thread outlives a cancelled worker: run() waits for it before giving up the lease
            result = cast(_Result, await asyncio.shield(job))
            outcome = "done"
            return result
        except TrainingCancelled:
            outcome = "cancelled"
            log.info("%s request %s cancelled by shutdown; it runs again after the restart", kind, request.message_id)
            return None
        except Exception as exc:  # noqa: BLE001 - a failed job is recorded and the worker goes on
            outcome = "failed"
            reason = f"{type(exc).__name__}: {exc}"
            log.error("%s request %s failed: %s", kind, request.message_id, reason)
            await asyncio.to_thread(self.store.set_request_status, request, "failed", reason[:2000])
            return None
        finally:
            TRAINING.finish(kind, outcome)
            self.training.clear()

    async def _adapt_and_announce(self, request: AdaptationRequested) -> None:
        event = await self._run_job(
            request, "adaptation", lambda: self._adapt(request, self.settings, self._stop_training.is_set)
        )
        if event is None:
            return
        self.adaptations.append(event)
        await self._announce(event)
        await asyncio.to_thread(self.store.set_request_status, request, "done", event.artifact_uri)

    async def _train_and_announce(self, request: TrainingRequested) -> None:
        outcome = await self._run_job(
            request,
            "training",
            lambda: self._train(request, self.store, self.registry, self.settings, self._stop_training.is_set),
        )
        if outcome is None:
            return
        self.outcomes.append(outcome)
        if outcome.published is not None:
            await self._announce(outcome.published)
        detail = f"{outcome.version.status} {outcome.version.name}"
        await asyncio.to_thread(self.store.set_request_status, request, "done", detail)

    def train_now(self, request: TrainingRequested) -> TrainingOutcome:
        """Run one training in the calling thread with the service's ``train``, store and registry, neither queued
        nor announced (the CLI's in-process run, where no broker carries the request or the event)."""
        return self._train(request, self.store, self.registry, self.settings, self._stop_training.is_set)

    async def _announce(self, event: Envelope) -> None:
        """Publish a finished job's event, retrying while the broker is away (a restart) until it is confirmed.

        An event that could not be sent must neither kill the worker (no later job would run) nor be dropped (the NER
        API would never hear of the model). If the process stops first, the request is still ``running`` in the
        store, so it runs again after the restart and announces its own version."""
        broker = self.service.broker
        while True:
            try:
                await broker.publisher.publish(event)
                return
            except PublishError as exc:
                log.warning("%s %s not confirmed yet (%s); retrying", event.type, event.message_id, exc)
            await asyncio.sleep(broker.settings.reconnect_interval_s)
            with contextlib.suppress(TimeoutError):
                await broker.wait_connected(broker.settings.connect_timeout_s)

    async def run(self, install_signal_handlers: bool = True) -> bool:
        """Consume and train until stopped (SIGTERM); a training in progress is abandoned and re-run after restart.

        Only the replica holding the trainer lease (:class:`~synthner_shared.messaging.lease.BrokerLease`) consumes,
        trains and removes half-written model folders; another one waits here, consuming nothing, until the lease is
        free (its holder stopped or died). A holder that loses the lease to another replica stops: False."""
        self.start()
        if not await self.lease.acquire(until=self.service.wait_stop_requested):
            return True  # asked to stop while waiting: nothing was taken on
        try:
            discarded = await asyncio.to_thread(
                lambda: self.registry.discard_staging() + discard_staging(self.settings.generators_dir)
            )
            if discarded:
                log.warning("removed %d half-written model folders left by an earlier crash", discarded)
            return await self._run_holding_lease(install_signal_handlers)
        finally:
            await self.lease.release()

    async def _run_holding_lease(self, install_signal_handlers: bool) -> bool:
        service_task = asyncio.create_task(self.service.run(install_signal_handlers))
        await asyncio.wait(
            [service_task, asyncio.create_task(self.service.wait_started())], return_when=asyncio.FIRST_COMPLETED
        )
        worker = asyncio.create_task(self._worker())
        keeper = asyncio.create_task(self._keep_lease())
        try:
            await asyncio.wait({service_task, keeper}, return_when=asyncio.FIRST_COMPLETED)
            if keeper.done() and not service_task.done():  # another replica holds the lease now: stop
                self._stop_training.set()
                self.service.request_stop()
                await service_task
                return False
            return await service_task
        finally:
            keeper.cancel()
            self._stop_training.set()  # a running training stops at its next step; its request stays pending
            worker.cancel()
            await asyncio.gather(worker, keeper, return_exceptions=True)
            await self._wait_for_abandoned_job()

    async def _keep_lease(self) -> None:
        """Return when the lease is gone for good: its connection closed (a broker restart, a network cut) and it
        could not be taken again within ``connect_timeout_s``, or another replica has taken it meanwhile."""
        timeout_s = self.service.broker.settings.connect_timeout_s
        while True:
            await self.lease.lost.wait()
            log.warning("the trainer lease's connection closed; taking the lease again")
            if not await self.lease.reacquire(timeout_s):
                log.error("lost the trainer lease (another replica holds it, or the broker stayed away): stopping")
                return

    async def _wait_for_abandoned_job(self) -> None:
        """Let a cancelled job's thread reach its next step and stop (within ``shutdown_grace_s``), so the lease is
        given up only after this replica's last write to the store and the model folders."""
        job = self._job
        if job is None:
            return
        if not job.done():
            await asyncio.wait({job}, timeout=self.service.broker.settings.shutdown_grace_s)
        if job.done() and not job.cancelled():
            job.exception()  # retrieved: a cancelled job ends in TrainingCancelled, already expected

    def request_stop(self) -> None:
        self.service.request_stop()

    def close(self) -> None:
        """Close the dataset store (if :meth:`start` opened it)."""
        if self._store is not None:
            self._store.close()
