"""The serving predictor is the shared windowed tagger with another forward pass: same spans and scores, whatever the
token budget cuts the windows into, and every decoding option of the predictor it was given; the ONNX graph shipped
in the folder gives the torch weights' spans.

The model is the base encoder with an untrained (random, made decisive) token-classification head: no fine-tune,
the comparison needs only a model that predicts spans.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ner_api_support import install_model
from transformers import AutoModelForTokenClassification, AutoTokenizer

from synthner_ner_api.predictor import ServingPredictor, token_budget_batches
from synthner_ner_api.testing import mark_published
from synthner_shared.model_store import ModelStoreLayout
from synthner_shared.ner.onnx import ONNX_FILE, ONNX_INT8_FILE, OnnxSpanPredictor, OnnxUnavailableError, export_onnx
from synthner_shared.ner.predictor import SpanPredictor
from synthner_shared.ner.windowed import ModelFolderError
from synthner_trainer.base_model import default_base_model

TAGS = ["O", "B-Disease", "I-Disease", "B-Drug", "I-Drug"]
WORDS = ["the", "patient", "has", "diabetes", "and", "asthma", "with", "metformin", "aspirin", "fever", "cough"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    base = default_base_model()
    model = AutoModelForTokenClassification.from_pretrained(
        base, num_labels=len(TAGS), id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)}
    )
    with torch.no_grad():
        model.classifier.weight.mul_(40)  # a random head that commits to tags, so there are spans to compare
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    export_onnx(model, folder)
    return folder


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(1)
    return [" ".join(rng.choice(WORDS) for _ in range(n)) for n in (3, 10, 50, 120, 7, 300, 1, 64, 200, 33)]


@pytest.mark.parametrize("max_batch_tokens", [8192, 300])
def test_served_spans_and_scores_are_the_shared_predictors(
    model_folder: Path, texts: list[str], max_batch_tokens: int
) -> None:
    base = SpanPredictor.load(model_folder, device="cpu", max_length=64, stride=16)
    served = ServingPredictor.from_torch(base, max_batch_tokens).annotate(texts)
    expected = base.predict_scored(texts)
    assert sum(map(len, expected)) > 20, "the head predicts spans"
    assert [[(s.start, s.end, s.label) for s in spans] for spans in served] == [
        [(s.start, s.end, s.label) for s in spans] for spans in expected
    ]
    # float32 over other batch shapes (the budget cuts batches the shared predictor does not): a few 1e-6 apart
    assert [s.score for spans in served for s in spans] == pytest.approx(
        [s.score for spans in expected for s in spans], abs=1e-5
    )


def test_the_decoding_options_of_the_given_predictor_are_kept(model_folder: Path, texts: list[str]) -> None:
    base = SpanPredictor.load(model_folder, device="cpu", max_length=64, stride=16, outside_bias=2.0)
    served = ServingPredictor.from_torch(base)
    assert served.tagger.outside_bias == 2.0
    assert served.tagger is not base  # a copy with the serving batch limits
    assert (base.batch_size, base.max_batch_tokens) == (32, None)  # the given predictor is left as it was
    plain = SpanPredictor.load(model_folder, device="cpu", max_length=64, stride=16).predict_scored(texts)
    assert served.annotate(texts) != plain, "the bias changed no span here, so the test did not cover it"


def test_a_variant_and_a_serving_predictor_given_as_base_start_from_the_fp32_weights(model_folder: Path) -> None:
    base = SpanPredictor.load(model_folder, device="cpu")
    fp32 = ServingPredictor.from_torch(base)
    int8 = fp32.variant(int8=True)
    assert int8.int8
    back = int8.variant(int8=False).tagger
    assert isinstance(back, SpanPredictor)
    assert back.model is base.model  # back to the fp32 weights, not a re-quantised copy
    assert int8.serving_info == {"precision": "int8", "runtime": "torch"}


def test_token_budget_batches_count_rows_at_the_padded_length() -> None:
    assert list(token_budget_batches([100, 100, 100, 100, 100], 200)) == [(0, 2), (2, 4), (4, 5)]
    assert list(token_budget_batches([100, 90, 80, 40], 200)) == [(0, 2), (2, 4)]
    assert list(token_budget_batches([500, 150], 200)) == [(0, 1), (1, 2)]  # a first row over the budget still goes
    assert list(token_budget_batches([], 200)) == []
    assert list(token_budget_batches([100, 10, 10], 200)) == [(0, 2), (2, 3)]  # padded to 100, not counted as 10


@pytest.mark.parametrize("max_batch_tokens", [8192, 300])
def test_the_shipped_onnx_gives_the_torch_weights_spans_and_scores(
    model_folder: Path, texts: list[str], max_batch_tokens: int
) -> None:
    torch_spans = SpanPredictor.load(model_folder, device="cpu", max_length=64, stride=16).predict_scored(texts)
    onnx = OnnxSpanPredictor.load(model_folder, max_length=64, stride=16, max_batch_tokens=max_batch_tokens)
    onnx_spans = onnx.predict_scored(texts)
    assert sum(map(len, torch_spans)) > 20, "the head predicts spans"
    assert [[(s.start, s.end, s.label) for s in spans] for spans in onnx_spans] == [
        [(s.start, s.end, s.label) for s in spans] for spans in torch_spans
    ]
    assert [s.score for spans in onnx_spans for s in spans] == pytest.approx(
        [s.score for spans in torch_spans for s in spans], abs=1e-4
    )


def test_the_serving_predictor_loads_the_shipped_graphs(model_folder: Path, texts: list[str]) -> None:
    fp32 = ServingPredictor.load_for_serving(model_folder)
    int8 = fp32.variant(int8=True)
    assert (fp32.runtime, fp32.int8, int8.int8) == ("onnx", False, True)
    assert int8.serving_info == {"precision": "int8", "runtime": "onnx"}
    assert any(int8.annotate(texts))


def test_a_truncated_or_changed_graph_is_refused_with_its_reason(model_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    graph = folder / ONNX_FILE
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with pytest.raises(ModelFolderError, match="truncated"):
        OnnxSpanPredictor.load(folder)
    quantized = folder / ONNX_INT8_FILE
    data = bytearray(quantized.read_bytes())
    data[-10] ^= 0xFF
    quantized.write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="SHA-256"):
        OnnxSpanPredictor.load(folder, int8=True)


def test_a_folder_without_shipped_onnx_is_exported_where_torch_is_installed(
    model_folder: Path, tmp_path: Path, texts: list[str]
) -> None:
    folder = tmp_path / "old"
    shutil.copytree(model_folder, folder, ignore=shutil.ignore_patterns("*.onnx", "onnx.json"))
    with pytest.raises(OnnxUnavailableError, match=r"no shipped model\.onnx"):
        OnnxSpanPredictor.load(folder, export_if_missing=False)
    exported = OnnxSpanPredictor.load(folder, max_length=64, stride=16).predict(texts)
    assert exported == OnnxSpanPredictor.load(model_folder, max_length=64, stride=16).predict(texts)
    assert not (folder / ONNX_FILE).exists()  # exported into a scratch folder: the store stays read-only


SERVE_WITHOUT_TORCH = """
import asyncio, importlib.machinery, json, sys
from pathlib import Path


class PathFinderWithoutTorch(importlib.machinery.PathFinder):
    # As if torch were not installed: never found (importing it fails, find_spec says None). (sys.modules["torch"]
    # = None is not enough: scipy, under the int8 gate's seqeval, then reads torch.Tensor from it.)

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] == "torch" else super().find_spec(name, path, target)


sys.meta_path = [PathFinderWithoutTorch if f is importlib.machinery.PathFinder else f for f in sys.meta_path]

import httpx

from synthner_ner_api.app import create_app
from synthner_ner_api.loading import ServingLoader
from synthner_ner_api.models import ModelRegistry
from synthner_ner_api.settings import NerApiSettings


async def main(store: Path, text: str) -> None:
    settings = NerApiSettings(auth_mode="trusted_proxy", model_store=store, listen_for_models=False)
    registry = ModelRegistry(ServingLoader(settings), store=store)
    app = create_app(settings, registry)
    async with app.router.lifespan_context(app):
        await registry.load()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ner", headers={"X-Authenticated-User": "t"}
        ) as client:
            reply = await client.post("/v1/ner", json={"text": text})
    fallback = registry.fallback
    print(json.dumps({
        "status": reply.status_code,
        "body": reply.json(),
        "fallback": [fallback.wanted, fallback.reason] if fallback else None,
        "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch"),
    }))


asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
"""


def test_the_api_serves_the_shipped_onnx_with_torch_unimportable(
    model_folder: Path, texts: list[str], tmp_path: Path
) -> None:
    store = tmp_path / "models"
    install_model(store, model_folder, "m-1-shipped")
    old = ModelStoreLayout(store).version_dir("m-2-old")  # newer, but written before ONNX was shipped
    shutil.copytree(model_folder, old, ignore=shutil.ignore_patterns("*.onnx", "onnx.json"))
    mark_published(old)
    text = texts[5]
    ran = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_TORCH, str(store), text],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["torch"] == []
    assert result["status"] == 200
    assert result["body"]["model_version"] == "m-1-shipped"
    assert result["fallback"][0] == "m-2-old"
    assert "no torch to export it" in result["fallback"][1]
    (expected,) = ServingPredictor.load_for_serving(model_folder).annotate([text])
    assert expected, "the head predicts spans in this text"
    assert [(e["start"], e["end"], e["label"]) for e in result["body"]["entities"]] == [
        (s.start, s.end, s.label) for s in expected
    ]


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_an_int8_document_gets_the_same_entities_and_scores_whatever_it_is_batched_with(
    model_folder: Path, texts: list[str], runtime: str
) -> None:
    """Dynamic quantisation scales activations per batch tensor: served int8, each window has a pass of its own."""
    int8 = ServingPredictor.load_for_serving(model_folder, int8=True, runtime=runtime)  # type: ignore[arg-type]
    together = int8.annotate(texts)
    assert sum(map(len, together)) > 0
    assert int8.annotate(texts[::-1])[::-1] == together
    assert [int8.annotate([text])[0] for text in texts] == together
