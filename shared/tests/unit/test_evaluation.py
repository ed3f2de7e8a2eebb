"""Span evaluation: seqeval strict equals exact span matching; partial counts overlaps; mismatched inputs fail."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from synthner_shared.documents import Document, DocumentEntity, read_documents
from synthner_shared.evaluation import evaluate_spans

GOLD = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def doc(doc_id: str, text: str, spans: list[tuple[int, int, str]]) -> Document:
    return Document(id=doc_id, text=text, entities=[DocumentEntity(start=s, end=e, label=lab) for s, e, lab in spans])


TEXT = "fever and severe asthma with aspirin use"
GOLD_DOC = doc("1", TEXT, [(0, 5, "Disease"), (10, 23, "Disease"), (29, 36, "Drug")])


def test_identical_predictions_score_one() -> None:
    result = evaluate_spans([GOLD_DOC], [GOLD_DOC], "same")
    assert result.strict_micro.f1 == 1.0
    assert result.partial_micro.f1 == 1.0
    assert result.strict_per_label["Disease"].support == 2


def test_a_boundary_error_is_wrong_strictly_but_right_partially() -> None:
    predicted = doc(
        "1", TEXT, [(0, 5, "Disease"), (17, 23, "Disease"), (29, 36, "Drug")]
    )  # "asthma", not "severe asthma"
    result = evaluate_spans([GOLD_DOC], [predicted], "boundary")
    assert result.strict_per_label["Disease"].precision == pytest.approx(0.5)
    assert result.strict_per_label["Disease"].recall == pytest.approx(0.5)
    assert result.strict_per_label["Drug"].f1 == 1.0
    assert result.strict_micro.f1 == pytest.approx(2 / 3)
    assert result.partial_micro.f1 == 1.0


def test_a_wrong_label_is_wrong_in_both_modes() -> None:
    predicted = doc("1", TEXT, [(0, 5, "Drug")])
    result = evaluate_spans([GOLD_DOC], [predicted], "label")
    assert result.strict_micro.precision == 0.0
    assert result.partial_micro.precision == 0.0
    assert result.partial_micro.recall == 0.0


def test_adjacent_spans_are_kept_apart() -> None:
    gold = doc("1", "abcdef", [(0, 3, "X"), (3, 6, "X")])
    merged = doc("1", "abcdef", [(0, 6, "X")])
    assert evaluate_spans([gold], [merged], "adjacent").strict_micro.f1 == 0.0


def test_missing_or_extra_or_changed_documents_are_errors() -> None:
    with pytest.raises(ValueError, match="no prediction"):
        evaluate_spans([GOLD_DOC], [], "x")
    with pytest.raises(ValueError, match="not in the gold set"):
        evaluate_spans([GOLD_DOC], [GOLD_DOC, doc("2", "x", [])], "x")
    with pytest.raises(ValueError, match="different text"):
        evaluate_spans([GOLD_DOC], [doc("1", TEXT + ".", [])], "x")


def test_strict_scores_equal_exact_span_matching_on_a_perturbed_gold_file() -> None:
    path = GOLD / "ncbi_disease" / "dev.jsonl"
    if not path.exists():
        pytest.skip(f"gold data not beside the repository ({path})")
    gold = list(read_documents(path))[:40]
    rng = random.Random(7)
    predicted = []
    for document in gold:
        kept = []
        for e in document.entities:
            roll = rng.random()
            if roll < 0.2:
                continue  # dropped
            if roll < 0.35 and e.end - e.start > 1:
                kept.append(DocumentEntity(start=e.start, end=e.end - 1, label=e.label))  # shortened
            else:
                kept.append(e)
        predicted.append(Document(id=document.id, text=document.text, entities=kept))
    result = evaluate_spans(gold, predicted, "ncbi-dev-slice")
    gold_set = {(d.id, e.start, e.end, e.label) for d in gold for e in d.entities}
    pred_set = {(d.id, e.start, e.end, e.label) for d in predicted for e in d.entities}
    assert result.strict_micro.precision == pytest.approx(len(gold_set & pred_set) / len(pred_set))
    assert result.strict_micro.recall == pytest.approx(len(gold_set & pred_set) / len(gold_set))
    assert result.partial_micro.precision == 1.0
    assert result.partial_micro.recall > result.strict_micro.recall
