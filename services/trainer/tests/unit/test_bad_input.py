"""Bad input is a clear error before any training starts (no weights are loaded by ``prepare``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synthner_shared.documents import Document, DocumentEntity, write_documents
from synthner_shared.messaging import BrokerSettings, PoisonMessageError
from synthner_shared.ner import LabelOutsideSetError
from synthner_shared.ner.predictor import DeviceUnavailableError
from synthner_shared.testing import sample_annotated
from synthner_trainer import pipeline
from synthner_trainer.app import build
from synthner_trainer.base_model import BaseModelError, check_base_model, default_base_model
from synthner_trainer.pipeline import TrainingOutcome
from synthner_trainer.registry import ModelRegistry
from synthner_trainer.service import TrainerService
from synthner_trainer.settings import TrainerSettings, TrainingConfig
from synthner_trainer.store import EmptyDatasetError, manifest_for
from synthner_trainer.training import TrainingPlan, prepare

DOCS = [
    Document(id="a", text="history of asthma", entities=[DocumentEntity(start=11, end=17, label="Disease")]),
    Document(id="b", text="no fever today", entities=[DocumentEntity(start=3, end=8, label="Symptom")]),
]


def test_empty_dataset_is_refused() -> None:
    with pytest.raises(EmptyDatasetError, match="empty"):
        prepare([], None, default_base_model(), TrainingConfig())


def test_labels_outside_the_configured_set_are_refused() -> None:
    with pytest.raises(LabelOutsideSetError, match="Symptom"):
        prepare(DOCS, None, default_base_model(), TrainingConfig(), labels=["Disease"])


def test_label_set_comes_from_the_data_when_not_configured() -> None:
    plan = prepare(DOCS, DOCS[:1], default_base_model(), TrainingConfig())
    assert plan.labels == ["Disease", "Symptom"]


def test_missing_base_model_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="does not exist"):
        prepare(DOCS, None, tmp_path / "nowhere", TrainingConfig())


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no config.json"),
        ({"config.json": "[1, 2"}, "not a JSON object"),
        ({"config.json": json.dumps({"model_type": "resnet"})}, "no token-classification head"),
        ({"config.json": json.dumps({"model_type": "bert"})}, "no weights"),
        ({"config.json": json.dumps({"model_type": "bert"}), "model.safetensors": ""}, "tokenizer.json"),
    ],
)
def test_folders_that_cannot_become_a_token_classifier_are_refused(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(BaseModelError, match=message):
        check_base_model(tmp_path)


def test_the_packaged_default_base_model_passes_the_check() -> None:
    assert check_base_model(default_base_model()).is_dir()


def test_a_stride_as_long_as_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="stride"):
        prepare(DOCS, None, default_base_model(), TrainingConfig(max_length=16, stride=14))


async def test_a_trainer_configured_for_cuda_without_a_gpu_fails_at_start(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    settings = TrainerSettings(data_dir=tmp_path, device="cuda")
    TrainerService(settings, BrokerSettings())
    assert list(tmp_path.iterdir()) == []  # constructing the service opens nothing
    with pytest.raises(DeviceUnavailableError, match="no CUDA device"):
        await build(settings, BrokerSettings())
    assert list(tmp_path.iterdir()) == []  # no store or model registry opened


async def test_a_document_with_labels_outside_the_trainers_set_is_a_poison_message_and_not_stored(
    tmp_path: Path,
) -> None:
    app = await build(TrainerSettings(data_dir=tmp_path, labels=["Symptom"]), BrokerSettings())
    try:
        document = sample_annotated(seed=1, target_chars=300, spans=3)  # Disease spans only
        with pytest.raises(PoisonMessageError, match=r"^document uses labels \['Disease'\] outside the trainer's"):
            await app.trainer.store_document(document)
        assert app.trainer.store.count() == 0
    finally:
        await app.aclose()


async def test_progress_is_reported_by_the_default_training_only(tmp_path: Path) -> None:
    def fake_train(*_: object) -> TrainingOutcome:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="not both"):
        await build(TrainerSettings(data_dir=tmp_path), BrokerSettings(), fake_train, progress=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_the_dev_gold_set_must_not_be_the_gate_set(tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    with pytest.raises(ValueError, match="must not make its choices on its gate's set"):
        TrainerSettings(data_dir=tmp_path, gold=gold, dev_gold=tmp_path / "." / "gold.jsonl")


def test_with_a_dev_gold_set_every_document_trains_and_the_choices_are_made_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = [Document(id="d", text="asthma again", entities=[DocumentEntity(start=0, end=6, label="Disease")])]
    write_documents(tmp_path / "dev.jsonl", dev)
    documents = [
        Document(id=f"n{i}", text=f"note {i}: asthma", entities=[DocumentEntity(start=9, end=15, label="Disease")])
        for i in range(10, 20)
    ]
    plans: list[TrainingPlan] = []

    def fine_tune(plan: TrainingPlan, **_: object) -> None:
        plans.append(plan)
        raise RuntimeError("stop before training")

    monkeypatch.setattr(pipeline, "fine_tune", fine_tune)
    settings = TrainerSettings(data_dir=tmp_path, dev_gold=tmp_path / "dev.jsonl")
    with pytest.raises(RuntimeError, match="stop before training"):
        pipeline.train_and_register(
            documents,
            manifest=manifest_for("v1", documents, ["test"]),
            settings=settings,
            registry=ModelRegistry(tmp_path / "models"),
            config=TrainingConfig(),
            base_model=default_base_model(),
            correlation_id="c",
        )
    (plan,) = plans
    assert ([d.id for d in plan.train], [d.id for d in plan.dev]) == ([d.id for d in documents], ["d"])
