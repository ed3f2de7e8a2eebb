"""A ModelPublished event on the broker makes a running replica load and serve the new version."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ner_api_support import load_lexicon_model, write_model

from synthner_ner_api.events import model_event_consumer
from synthner_ner_api.models import ModelRegistry
from synthner_shared.contracts import DatasetManifest, EvaluationResult, ModelPublished, Scores
from synthner_shared.messaging import BrokerSettings, Service
from synthner_shared.testing import BrokerProbe, publish_once, running_service

pytestmark = pytest.mark.rabbitmq


def published(version: str, store: Path) -> ModelPublished:
    zero = Scores(precision=0.5, recall=0.5, f1=0.5, support=2)
    return ModelPublished(
        correlation_id="job-1",
        producer="trainer-test",
        model_version=version,
        artifact_uri=str(store / version),
        labels=["Condition"],
        base_model="test",
        metrics=[
            EvaluationResult(
                dataset="gold",
                documents=1,
                strict_micro=zero,
                strict_macro=zero,
                partial_micro=zero,
                strict_per_label={},
                partial_per_label={},
            )
        ],
        dataset=DatasetManifest(version="d1", content_hash="0" * 64, document_count=1, annotators=[], label_counts={}),
    )


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
            await publish_once(broker_settings, published("v2", store))
            await asyncio.wait_for(registry.wait_for_version("v2"), timeout=30)
        assert registry.previous is not None
        assert registry.previous.version == "v1"
        # Fan-out: each replica consumed the event from its own queue.
        assert [s.runners[0].stats.processed for s in services] == [1, 1]
    finally:
        await broker_probe.topology.delete(await broker_probe.connection.channel(), instances=replicas)
