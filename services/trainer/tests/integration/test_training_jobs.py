"""A real (tiny) training through the trainer service over the real RabbitMQ, with each local job runner: documents
and a ``TrainingRequested`` in, ``ModelPublished`` out, the version registered and current. ``in_process`` trains in
the service's worker thread; ``subprocess`` freezes and exports the dataset version, runs the one-shot job
(``python -m synthner_trainer.job``) as a child process that stages the model and writes its outcome, then registers
the staged model (verified by loading it back) and announces it, as the kubernetes runner does with a Job.

About a minute per runner on two idle cores: all-MiniLM-L6-v2, ten short documents, one epoch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from synthner_shared.contracts import DocumentAnnotated, ModelPublished, TrainingRequested, decode_message
from synthner_shared.messaging import BrokerSettings
from synthner_shared.testing import BrokerProbe, publish_once, running_app, sample_annotated
from synthner_trainer.app import build
from synthner_trainer.settings import TrainerSettings, TrainingConfig

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

TINY = TrainingConfig(
    epochs=1,
    batch_size=8,
    max_length=64,
    stride=16,
    seed=7,
    calibrate_outside_bias=False,
    abbreviations="off",
    identifiers="off",
)


@pytest.mark.parametrize("runner", ["in_process", "subprocess"])
async def test_a_real_training_is_published_by_each_local_job_runner(
    runner: str, tmp_path: Path, broker_settings: BrokerSettings, broker_probe: BrokerProbe
) -> None:
    settings = TrainerSettings(
        data_dir=tmp_path / "trainer",
        device="cpu",
        job_runner=runner,  # type: ignore[arg-type]
        training=TINY,
        dev_fraction=0.2,
        patience=0,
    )
    app = await build(settings, broker_settings)
    trainer = app.trainer
    documents = [sample_annotated(seed=seed, target_chars=300, spans=3) for seed in range(10)]
    stored: asyncio.Queue[str] = asyncio.Queue()
    original = trainer.store_document

    async def recording(message: DocumentAnnotated) -> None:
        await original(message)
        await stored.put(message.note_id)

    trainer.store_document = recording  # type: ignore[method-assign]
    request = TrainingRequested(correlation_id=f"jobs-{runner}", producer="tests")
    async with running_app(app):
        await publish_once(broker_settings, *documents)
        for _ in documents:
            await asyncio.wait_for(stored.get(), 30)
        await publish_once(broker_settings, request)
        message = await broker_probe.get(f"{broker_probe.topology.namespace}.model-history", timeout_s=900)
        published = decode_message(message.body)
        assert isinstance(published, ModelPublished)
        assert published.correlation_id == request.correlation_id
        assert published.dataset.document_count == len(documents)
        current = trainer.registry.current()
        assert current is not None
        assert current.name == published.model_version
        assert (current.path / "model.onnx").is_file()  # what the NER API serves
        status = trainer.store.request_status(str(request.message_id))
        assert status == ("done", f"published {published.model_version}")
    jobs = settings.jobs_path
    assert not jobs.exists() or list(jobs.iterdir()) == []  # the job folder went once its model was registered
