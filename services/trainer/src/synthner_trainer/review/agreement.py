"""Agreement figures: each annotator's precision, recall and F1 per label against the reviewed spans, and Cohen's
kappa at token level between annotators and between reviewers of the same notes. Pure functions over documents.

Kappa is computed over word tokens (runs of word characters, or single other non-space characters), each tagged with
the label of the span that covers it, else ``O``; pooled over every note both sides labelled, so a pair's kappa is
one figure. Tokens, not characters: a long mention should not count more than a short one of the same word count.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from synthner_shared.contracts import EvaluationResult
from synthner_shared.documents import Document
from synthner_shared.evaluation import evaluate_spans

_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Kappa:
    first: str
    second: str
    kappa: float
    documents: int
    tokens: int


@dataclass(frozen=True)
class Agreement:
    reviewed_documents: int
    annotators: dict[str, EvaluationResult]
    between_annotators: list[Kappa]
    between_reviewers: list[Kappa]


def token_labels(document: Document) -> list[str]:
    """The label of every token of the text (``O`` outside every span)."""
    labels: list[str] = []
    spans = document.entities
    index = 0
    for match in _TOKEN.finditer(document.text):
        while index < len(spans) and spans[index].end <= match.start():
            index += 1
        inside = index < len(spans) and spans[index].start < match.end()
        labels.append(spans[index].label if inside else "O")
    return labels


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Cohen's kappa of two label sequences of one length; 1.0 when both say the same and chance agreement is 1."""
    if len(first) != len(second):
        raise ValueError("kappa needs two label sequences of one length")
    if not first:
        return 1.0
    total = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / total
    counts_a, counts_b = Counter(first), Counter(second)
    expected = sum(counts_a[label] * counts_b[label] for label in counts_a) / (total * total)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def pairwise_kappa(systems: Mapping[str, Sequence[Document]]) -> list[Kappa]:
    """Token-level kappa of every pair of systems over the notes (same id and text) both labelled; pairs that share
    no note are left out."""
    rows: list[Kappa] = []
    for (name_a, docs_a), (name_b, docs_b) in itertools.combinations(sorted(systems.items()), 2):
        by_id = {d.id: d for d in docs_b}
        tags_a: list[str] = []
        tags_b: list[str] = []
        shared = 0
        for document in docs_a:
            other = by_id.get(document.id)
            if other is None or other.text != document.text:
                continue
            shared += 1
            tags_a += token_labels(document)
            tags_b += token_labels(other)
        if shared:
            rows.append(Kappa(name_a, name_b, cohen_kappa(tags_a, tags_b), shared, len(tags_a)))
    return rows


def agreement(
    reviewed: Sequence[Document],
    annotators: Mapping[str, Sequence[Document]],
    reviewers: Mapping[str, Sequence[Document]] | None = None,
) -> Agreement:
    """Every figure at once: each annotator scored on the reviewed notes it annotated, kappa between annotators (on
    all notes they share) and between reviewers (on notes reviewed twice)."""
    gold_ids = {d.id for d in reviewed}
    scores: dict[str, EvaluationResult] = {}
    for name, documents in sorted(annotators.items()):
        mine = [d for d in documents if d.id in gold_ids]
        if mine:
            ids = {d.id for d in mine}
            scores[name] = evaluate_spans([d for d in reviewed if d.id in ids], mine, f"{name} vs reviewed")
    return Agreement(len(reviewed), scores, pairwise_kappa(annotators), pairwise_kappa(reviewers or {}))


def agreement_lines(result: Agreement) -> list[str]:
    """The figures as plain text lines (``synthner review stats``)."""
    lines = [f"reviewed documents: {result.reviewed_documents}"]
    for name, scores in result.annotators.items():
        lines.append(f"{name} against the reviewed spans ({scores.documents} documents):")
        lines.append(f"  {'label':<24} {'P':>6} {'R':>6} {'F1':>6} {'support':>7}")
        for label, row in sorted(scores.strict_per_label.items()):
            lines.append(f"  {label:<24} {row.precision:6.3f} {row.recall:6.3f} {row.f1:6.3f} {row.support:7d}")
        micro = scores.strict_micro
        lines.append(f"  {'micro':<24} {micro.precision:6.3f} {micro.recall:6.3f} {micro.f1:6.3f} {micro.support:7d}")
    for title, rows in (("annotators", result.between_annotators), ("reviewers", result.between_reviewers)):
        lines.append(f"Cohen's kappa (tokens) between {title}:" + ("" if rows else " none share a document"))
        lines += [f"  {r.first} ~ {r.second}: {r.kappa:.4f} ({r.documents} documents, {r.tokens} tokens)" for r in rows]
    return lines
