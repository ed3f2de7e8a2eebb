"""Entity-level evaluation of predicted character spans against gold spans.

- **strict**: seqeval in strict IOB2 mode (an entity counts only with the exact boundaries and label), per label,
  micro and macro. The tag sequences are built over the segments between all span boundaries of a document (gold
  and predicted), so every span maps to whole tokens and the comparison is exactly the comparison of character spans
  with the gold file's offsets — independent of any model tokenizer.
- **partial**: overlap matching. A predicted span is correct when it overlaps a gold span of the same label; a gold
  span is found when a predicted span of the same label overlaps it. Precision and recall are those shares.

Needs the ``eval`` extra (``pip install synthner-shared[eval]``) for seqeval.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol

from seqeval.metrics import classification_report
from seqeval.scheme import IOB2

from synthner_shared.contracts import EvaluationResult, Scores
from synthner_shared.contracts.spans import SpanLike


class DocumentLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def entities(self) -> Sequence[SpanLike]: ...


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _scores(correct_predicted: int, predicted: int, found_gold: int, gold: int) -> Scores:
    precision = correct_predicted / predicted if predicted else 0.0
    recall = found_gold / gold if gold else 0.0
    return Scores(precision=precision, recall=recall, f1=_f1(precision, recall), support=gold)


def segment_tags(text_length: int, spans: Sequence[SpanLike], boundaries: Sequence[int]) -> list[str]:
    """IOB2 tags over the segments between consecutive ``boundaries`` (sorted, from 0 to ``text_length``)."""
    index_of = {position: i for i, position in enumerate(boundaries)}
    tags = ["O"] * (len(boundaries) - 1)
    for span in spans:
        first, last = index_of[span.start], index_of[span.end]
        tags[first] = f"B-{span.label}"
        for segment in range(first + 1, last):
            tags[segment] = f"I-{span.label}"
    return tags


def _pairs(gold: Iterable[DocumentLike], predicted: Iterable[DocumentLike]) -> list[tuple[DocumentLike, DocumentLike]]:
    by_id = {document.id: document for document in predicted}
    pairs = []
    for document in gold:
        prediction = by_id.pop(document.id, None)
        if prediction is None:
            raise ValueError(f"no prediction for gold document {document.id!r}")
        if prediction.text != document.text:
            raise ValueError(f"prediction for document {document.id!r} has a different text than the gold document")
        pairs.append((document, prediction))
    if by_id:
        raise ValueError(f"{len(by_id)} predicted documents are not in the gold set, e.g. {next(iter(by_id))!r}")
    return pairs


def _strict(pairs: Sequence[tuple[DocumentLike, DocumentLike]]) -> tuple[Scores, Scores, dict[str, Scores]]:
    y_true: list[list[str]] = []
    y_pred: list[list[str]] = []
    for gold, predicted in pairs:
        spans = [*gold.entities, *predicted.entities]
        boundaries = sorted({0, len(gold.text), *(s.start for s in spans), *(s.end for s in spans)})
        y_true.append(segment_tags(len(gold.text), gold.entities, boundaries))
        y_pred.append(segment_tags(len(gold.text), predicted.entities, boundaries))
    if not any(tag != "O" for tags in (*y_true, *y_pred) for tag in tags):
        empty = Scores(precision=0.0, recall=0.0, f1=0.0, support=0)
        return empty, empty, {}
    report = classification_report(y_true, y_pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)

    def scores(row: dict[str, float]) -> Scores:
        return Scores(
            precision=float(row["precision"]),
            recall=float(row["recall"]),
            f1=float(row["f1-score"]),
            support=int(row["support"]),
        )

    per_label = {
        label: scores(row) for label, row in report.items() if label not in {"micro avg", "macro avg", "weighted avg"}
    }
    return scores(report["micro avg"]), scores(report["macro avg"]), per_label


def _overlaps(span: SpanLike, others: Sequence[SpanLike]) -> bool:
    return any(o.label == span.label and o.start < span.end and span.start < o.end for o in others)


def _partial(pairs: Sequence[tuple[DocumentLike, DocumentLike]]) -> tuple[Scores, dict[str, Scores]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # correct predicted, predicted, found, gold
    for gold, predicted in pairs:
        for span in predicted.entities:
            counts[span.label][0] += _overlaps(span, gold.entities)
            counts[span.label][1] += 1
        for span in gold.entities:
            counts[span.label][2] += _overlaps(span, predicted.entities)
            counts[span.label][3] += 1
    per_label = {label: _scores(*c) for label, c in sorted(counts.items())}
    totals = [sum(c[i] for c in counts.values()) for i in range(4)]
    return _scores(*totals), per_label


def evaluate_spans(gold: Iterable[DocumentLike], predicted: Iterable[DocumentLike], dataset: str) -> EvaluationResult:
    """Score predicted documents against gold documents, matched by id (every gold document needs a prediction)."""
    pairs = _pairs(gold, predicted)
    strict_micro, strict_macro, strict_per_label = _strict(pairs)
    partial_micro, partial_per_label = _partial(pairs)
    return EvaluationResult(
        dataset=dataset,
        documents=len(pairs),
        strict_micro=strict_micro,
        strict_macro=strict_macro,
        partial_micro=partial_micro,
        strict_per_label=strict_per_label,
        partial_per_label=partial_per_label,
    )
