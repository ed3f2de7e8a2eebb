"""A ModelPublished event on the broker makes a running replica load and serve the new version."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ner_api_support import load_lexicon_model, write_model

from synthner_ner_api.events import model_event_consumer
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.testing import model_published
from synthner_shared.messaging import BrokerSettings, Service
from synthner_shared.testing import BrokerProbe, publish_once, running_service

pytestmark = pytest.mark.rabbitmq


async def test_a_published_model_is_loaded_by_a_listening_replica(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe, store: Path
) -> None:
    registry = ModelRegistry(load_lexicon_model, store=store)
    await registry.load()
    replicas = {"ner-api": ["replica-a", "replica-b"]}
    services = [Service(broker_settings, name, [model_event_consumer(registry, name)]) for name in replicas["ner-api"]]
    try:
        async with running_service(services[0]), running_service(services[1]):
            write_model(store, "v2", "Condition", ["asthma"])
            await publish_once(broker_settings, model_published("v2", store))
            await asyncio.wait_for(registry.wait_for_version("v2"), timeout=30)
        assert registry.previous is not None
        assert registry.previous.version == "v1"
        # Fan-out: each replica consumed the event from its own queue.
        assert [s.runners[0].stats.processed for s in services] == [1, 1]
    finally:
        await broker_probe.topology.delete(await broker_probe.connection.channel(), instances=replicas)
