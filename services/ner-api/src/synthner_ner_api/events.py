"""Hot swap on ``ModelPublished``: each replica consumes model events on its own queue and loads the new version."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from synthner_ner_api.models import ModelLoadFailed, ModelNotFound, ModelRegistry
from synthner_shared.contracts import Envelope, ModelPublished
from synthner_shared.messaging import NER_API, BrokerSettings, BrokerUnavailable, Consumer, RetryableError, Service

log = logging.getLogger(__name__)


def model_event_consumer(registry: ModelRegistry, instance: str) -> Consumer[ModelPublished]:
    async def on_published(event: ModelPublished) -> Sequence[Envelope]:
        if registry.is_older_than_current(event.model_version):
            # A redelivered or late event: replicas move back only when an operator rolls back.
            log.info("ignoring model %s: older than the served %s", event.model_version, registry.current_version)
            return []
        try:
            await registry.load(event.model_version)
        except (ModelNotFound, ModelLoadFailed) as exc:
            # The artifact may not be (fully) visible on this replica's volume yet: retry with back-off, then
            # dead-letter; the model served before stays.
            raise RetryableError(str(exc)) from None
        return []

    return Consumer(NER_API, (ModelPublished,), on_published, instance=instance)


async def listen_for_models(broker: BrokerSettings, instance: str, registry: ModelRegistry) -> None:
    """Consume model events until cancelled; the API keeps serving while the broker is away."""
    while True:
        service = Service(broker, f"ner-api-{instance}", [model_event_consumer(registry, instance)])
        try:
            await service.run(install_signal_handlers=False)
            return
        except BrokerUnavailable as exc:
            log.warning("model events unavailable (%s); serving the current model, retrying", exc)
            await asyncio.sleep(broker.reconnect_interval_s)
