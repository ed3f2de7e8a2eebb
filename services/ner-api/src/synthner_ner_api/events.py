"""Model events: each replica consumes ``ModelPublished`` and ``ModelRolledBack`` on its own queue and swaps models;
its broker connection also carries the rollback requests of ``/v1/admin/rollback`` to the trainer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from synthner_ner_api.models import ModelLoadFailed, ModelNotFound, ModelRegistry
from synthner_shared.contracts import (
    Envelope,
    ModelPinReleaseRequested,
    ModelPublished,
    ModelRollbackRequested,
    ModelRolledBack,
)
from synthner_shared.messaging import NER_API, BrokerSettings, BrokerUnavailable, Consumer, RetryableError, Service
from synthner_shared.observability.metrics import ConsumerCollector

log = logging.getLogger(__name__)

ModelEvent = ModelPublished | ModelRolledBack


def model_event_consumer(registry: ModelRegistry, instance: str) -> Consumer[ModelEvent]:
    async def on_published(event: ModelPublished) -> None:
        if registry.is_older_than_current(event.model_version):
            # A redelivered or late event: replicas move back only when an operator rolls back.
            log.info("ignoring model %s: older than the served %s", event.model_version, registry.current_version)
            return
        pinned = registry.pinned_version()
        if pinned is not None and pinned != event.model_version:
            # Announced before a rollback and delivered after it (a retry): the rollback's pin holds.
            log.info("ignoring model %s: the store is rolled back to %s", event.model_version, pinned)
            return
        await registry.load(event.model_version)

    async def on_event(event: ModelEvent) -> Sequence[Envelope]:
        try:
            if isinstance(event, ModelRolledBack):
                await registry.follow_rollback(event.model_version, event.rolled_back_at, event.from_version)
            else:
                await on_published(event)
        except (ModelNotFound, ModelLoadFailed) as exc:
            # The artifact may not be (fully) visible on this replica's volume yet: retry with back-off, then
            # dead-letter; the model served before stays.
            raise RetryableError(str(exc)) from None
        return []

    return Consumer(NER_API, (ModelPublished, ModelRolledBack), on_event, instance=instance)


class ModelEvents:
    """A replica's link to the broker: it consumes model events (:meth:`listen`, until cancelled; the API keeps
    serving while the broker is away) and sends rollback requests on the same connection (:meth:`request_rollback`)."""

    def __init__(self, broker: BrokerSettings, instance: str) -> None:
        self._broker = broker
        self._instance = instance
        self._service: Service | None = None
        self._listening = asyncio.Event()

    async def listen(self, registry: ModelRegistry) -> None:
        broker, instance = self._broker, self._instance
        while True:
            service = Service(broker, f"ner-api-{instance}", [model_event_consumer(registry, instance)])
            self._service = service
            started = asyncio.create_task(self._mark_listening(service))
            try:
                await service.run(install_signal_handlers=False)
                return
            except BrokerUnavailable as exc:
                log.warning("model events unavailable (%s); serving the current model, retrying", exc)
                await asyncio.sleep(broker.reconnect_interval_s)
            finally:
                started.cancel()
                self._listening.clear()

    def metrics(self) -> ConsumerCollector:
        """The model-event consumer's counters (received, processed, failed, retried, dead-lettered per queue, handler
        latency, broker connected, consuming) for ``/metrics``, read at each scrape from the current connection's
        service (they start again at each reconnection)."""
        return ConsumerCollector(lambda: self._service)

    async def _mark_listening(self, service: Service) -> None:
        await service.wait_started()
        self._listening.set()

    async def wait_listening(self) -> None:
        """Return once this replica consumes its model-event queue (bound it with a time-out)."""
        await self._listening.wait()

    async def request_rollback(self, request: ModelRollbackRequested | ModelPinReleaseRequested) -> None:
        """Publish a rollback (or pin release) request for the trainer (publisher confirm); :class:`BrokerUnavailable`
        while this replica has no broker connection."""
        service = self._service
        if service is None or not service.broker.connected:
            raise BrokerUnavailable("this replica is not connected to the broker")
        await service.broker.publisher.publish(request)
