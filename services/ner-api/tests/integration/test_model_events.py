"""A ModelPublished event on the broker makes a running replica load and serve the new version, and the replica's
``/metrics`` counts the event its consumer handled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from ner_api_support import USER_KEY, load_lexicon_model, write_model

from synthner_ner_api.app import create_app
from synthner_ner_api.events import ModelEvents, model_event_consumer
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.server import ApiServer
from synthner_ner_api.settings import NerApiSettings
from synthner_ner_api.testing import model_published
from synthner_shared.local_llm import free_port
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


async def test_the_replica_s_metrics_count_the_model_events_it_consumed(
    broker_settings: BrokerSettings, broker_probe: BrokerProbe, settings: NerApiSettings
) -> None:
    port = free_port()
    registry = ModelRegistry(load_lexicon_model, store=settings.model_store)
    events = ModelEvents(broker_settings, "metrics-replica")
    # As build() composes a replica that listens for models.
    app = create_app(
        settings, registry, events.listen, request_rollback=events.request_rollback, event_metrics=events.metrics()
    )
    server = ApiServer(app, "127.0.0.1", port)
    running = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.wait_started(), 30)
        await asyncio.wait_for(events.wait_listening(), 30)
        assert settings.model_store is not None
        write_model(settings.model_store, "v2", "Condition", ["asthma"])
        await publish_once(broker_settings, model_published("v2", settings.model_store))
        await asyncio.wait_for(registry.wait_for_version("v2"), 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": USER_KEY}) as http:
            metrics = (await http.get("/metrics")).text
        processed = [line for line in metrics.splitlines() if line.startswith("synthner_messages_processed_total{")]
        assert len(processed) == 1
        assert "metrics-replica" in processed[0]
        assert processed[0].endswith(" 1.0")
        assert "synthner_consumer_ready 1.0" in metrics
        assert 'synthner_ner_model_info{version="v2"} 1.0' in metrics
    finally:
        server.request_stop()
        await asyncio.wait_for(running, 30)
        await server.aclose()
        instances = {"ner-api": ["metrics-replica"]}
        await broker_probe.topology.delete(await broker_probe.connection.channel(), instances=instances)
