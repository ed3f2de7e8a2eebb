"""The serving predictor is the shared predictor with another forward pass: same spans and scores, whatever the token
budget cuts the windows into, and every decoding option of the predictor it was given.

The model is the base encoder with an untrained (random, made decisive) token-classification head: no fine-tune,
the comparison needs only a model that predicts spans.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from synthner_ner_api.predictor import ServingPredictor, token_budget_batches
from synthner_shared.ner.predictor import SpanPredictor
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
    served = ServingPredictor(base, max_batch_tokens, runtime="torch").annotate(texts)
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
    served = ServingPredictor(base, runtime="torch")
    assert served.predictor.outside_bias == 2.0
    assert served.predictor.model is not base.model  # the serving forward pass, on a copy of the predictor
    assert base.batch_size == 32  # the given predictor is left as it was
    plain = SpanPredictor.load(model_folder, device="cpu", max_length=64, stride=16).predict_scored(texts)
    assert served.annotate(texts) != plain, "the bias changed no span here, so the test did not cover it"


def test_a_variant_and_a_serving_predictor_given_as_base_start_from_the_fp32_weights(model_folder: Path) -> None:
    base = SpanPredictor.load(model_folder, device="cpu")
    fp32 = ServingPredictor(base, runtime="torch")
    int8 = fp32.variant(int8=True)
    assert (int8.int8, int8.base, ServingPredictor(int8, runtime="torch").base) == (True, base, base)
    assert int8.serving_info == {"precision": "int8", "runtime": "torch"}


def test_token_budget_batches_count_rows_at_the_padded_length() -> None:
    assert list(token_budget_batches([100, 100, 100, 100, 100], 200)) == [(0, 2), (2, 4), (4, 5)]
    assert list(token_budget_batches([100, 90, 80, 40], 200)) == [(0, 2), (2, 4)]
    assert list(token_budget_batches([500, 150], 200)) == [(0, 1), (1, 2)]  # a first row over the budget still goes
    assert list(token_budget_batches([], 200)) == []
    assert list(token_budget_batches([100, 10, 10], 200)) == [(0, 2), (2, 3)]  # padded to 100, not counted as 10
