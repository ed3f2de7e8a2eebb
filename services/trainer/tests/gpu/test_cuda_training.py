"""The trainer's GPU path: bf16 and fp16 autocast on CUDA, fp32 master weights, a model that learns, and a folder
that a CPU serves with the same spans.

Skipped where no CUDA device is present (CI, the development machine). On a lent GPU machine it runs through
``scripts/device/gpu-check.sh`` (docs/trainer.md, "GPU check"), which also points these variables at the files it
carries: ``SYNTHNER_GOLD_DATA`` (the folder holding ``ncbi_disease/``; default ``../shared/data``) and
``SYNTHNER_TEST_BASE_MODEL`` (default: the packaged all-MiniLM-L6-v2).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from synthner_shared.documents import read_documents
from synthner_shared.evaluation import evaluate_spans
from synthner_shared.ner import iob2_tags
from synthner_shared.ner.predictor import SpanPredictor, pick_device
from synthner_trainer.base_model import default_base_model
from synthner_trainer.pipeline import GoldSet, train_to_folder
from synthner_trainer.settings import Precision, TrainingConfig
from synthner_trainer.training import Optimizer, autocast_for, collate, encode_documents, load_for_training, prepare

GOLD_DATA = Path(os.environ.get("SYNTHNER_GOLD_DATA", Path(__file__).resolve().parents[4].parent / "shared" / "data"))
NCBI = GOLD_DATA / "ncbi_disease"
CUDA = torch.device("cuda")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.skipif(not (NCBI / "train.jsonl").is_file(), reason=f"no NCBI-disease data in {GOLD_DATA}"),
    pytest.mark.timeout(600),
]


def base_model() -> Path:
    configured = os.environ.get("SYNTHNER_TEST_BASE_MODEL")
    return Path(configured) if configured else default_base_model()


@pytest.mark.parametrize(
    ("precision", "dtype", "scaled"),
    [("auto", torch.bfloat16, False), ("bf16", torch.bfloat16, False), ("fp16", torch.float16, True)],
)
def test_autocast_on_cuda_keeps_the_weights_fp32(precision: str, dtype: torch.dtype, scaled: bool) -> None:
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    autocast, scaler = autocast_for(CUDA, precision)
    assert autocast is not None
    assert (scaler is not None) is scaled
    layer = torch.nn.Linear(8, 2).to(CUDA)
    with autocast:
        out = layer(torch.ones(3, 8, device=CUDA))
    assert out.dtype == dtype
    assert layer.weight.dtype == torch.float32


def test_auto_takes_the_gpu() -> None:
    assert pick_device("auto").type == "cuda"


def test_optimiser_steps_in_each_precision_change_the_weights_and_keep_them_fp32() -> None:
    train = list(read_documents(NCBI / "train.jsonl"))[:4]
    plan = prepare(train, train[:1], base_model(), TrainingConfig(max_length=128, stride=32))
    for precision in ("bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp16",):
        tokenizer, model = load_for_training(plan)
        model.to(CUDA).train()
        tag_ids = {t: i for i, t in enumerate(iob2_tags(plan.labels))}
        windows = encode_documents(plan.train, tokenizer, tag_ids, plan.config)
        batch = collate(windows[:8], int(tokenizer.pad_token_id), CUDA)
        optimizer = Optimizer(
            model,
            learning_rate=1e-3,
            weight_decay=0.0,
            warmup_ratio=0.0,
            total_steps=10,
            device=CUDA,
            precision=precision,
        )
        before = model.classifier.weight.detach().clone()
        # fp16's loss scaler starts high and skips the steps whose gradients overflow while it scales down
        losses = [optimizer.step(batch) for _ in range(5)]
        assert all(torch.isfinite(torch.tensor(losses))), (precision, losses)
        assert not torch.equal(before, model.classifier.weight.detach()), precision
        assert {p.dtype for p in model.parameters()} == {torch.float32}, precision


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_a_gpu_run_learns_and_its_folder_serves_the_same_spans_on_a_cpu(precision: Precision, tmp_path: Path) -> None:
    train = list(read_documents(NCBI / "train.jsonl"))
    dev = list(read_documents(NCBI / "dev.jsonl"))[:30]
    gold = GoldSet("ncbi-test-slice", list(read_documents(NCBI / "test.jsonl"))[:40])
    config = TrainingConfig(epochs=3, learning_rate=3e-4, batch_size=16, max_length=128, stride=32, precision=precision)
    result, metrics = train_to_folder(
        train, tmp_path / "model", base_model(), config, dev=dev, gold=gold, device="cuda", patience=0
    )
    on_gpu = metrics[1]
    print(f"{precision}: {result.tokens_per_second:.0f} tokens/s, test-slice strict F1 {on_gpu.strict_micro.f1:.3f}")
    # on a CPU the whole training set reaches dev strict F1 0.80-0.83 after 3 epochs (benchmarks/train_gold.py logs)
    assert on_gpu.strict_micro.f1 > 0.6
    assert {(p.device.type, p.dtype) for p in result.model.parameters()} == {("cuda", torch.float32)}
    on_cpu = SpanPredictor.load(tmp_path / "model", device="cpu").predict_documents(gold.documents)
    again = evaluate_spans(gold.documents, on_cpu, gold.name)
    assert abs(again.strict_micro.f1 - on_gpu.strict_micro.f1) <= 0.01  # the same spans, up to fp32 rounding ties
