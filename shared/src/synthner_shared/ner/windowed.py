"""Windowed token classification over whole texts, free of any model runtime (no torch).

:class:`WindowedTagger` holds everything between a text and its entity spans except the model's forward pass:
tokenisation, windows (:func:`~synthner_shared.ner.encoding.plan_windows`), batching (longest windows first, under a
window count and a token budget), per-word scores and decoding (best valid IOB2 path, abbreviations, identifiers).
A runtime supplies only :meth:`WindowedTagger.log_probabilities` for a batch of token-id rows: torch
(:class:`synthner_shared.ner.predictor.SpanPredictor`, for training, evaluation and the annotator's encoder) or ONNX
Runtime (:class:`synthner_shared.ner.onnx.OnnxSpanPredictor`, the NER API's serving path). One implementation, so
offsets, boundaries and scores are the same whichever runtime runs the model.

This module needs numpy and a Hugging Face *fast* tokenizer object, never torch.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from synthner_shared.documents import Document, DocumentEntity
from synthner_shared.ner.abbreviations import expand_abbreviations, with_abbreviations
from synthner_shared.ner.encoding import (
    OUTSIDE,
    CharSpan,
    ScoredSpan,
    SpecialTokens,
    SubtokenPolicy,
    TagTransitions,
    TokenizedText,
    best_tag_path,
    decode_word_tags,
    plan_windows,
    tokenize,
    word_scores,
)
from synthner_shared.ner.identifiers import check_label_map, with_identifiers, with_scored_identifiers

LogProbabilities = npt.NDArray[np.float32]
"""``(rows, width, tags)``: each padded row's log-probability of every tag at every position."""


class ModelFolderError(ValueError):
    """A model folder is missing, incomplete, or not a token-classification model."""


@dataclass(frozen=True)
class WordScores:
    """A tokenized text and, per word, the log-probability of each tag (as the sub-token policy reads words)."""

    text: str
    tokens: TokenizedText
    scores: list[list[float]]


def with_abbreviation_mentions(text: str, decoded: Sequence[CharSpan], spans: Sequence[ScoredSpan]) -> list[ScoredSpan]:
    """``spans`` (the scored ``decoded`` spans) plus the mentions of abbreviations the text defines for them
    (:func:`~synthner_shared.ner.abbreviations.expand_abbreviations`), each scored as its long form."""
    score_of = {(s.start, s.end): s.score for s in spans}
    added = [
        ScoredSpan(e.span.start, e.span.end, e.span.label, score_of[e.source.start, e.source.end])
        for e in expand_abbreviations(text, decoded)
    ]
    return sorted([*spans, *added], key=lambda s: (s.start, s.end))


ENCODING_FILE = "encoding.json"
"""Beside the weights: how texts were encoded for training (window length, stride, sub-token policy)."""


def write_encoding(
    folder: Path,
    max_length: int,
    stride: int,
    outside_bias: float = 0.0,
    subtokens: SubtokenPolicy = "first",
    *,
    abbreviations: bool = False,
    transitions: TagTransitions | None = None,
    identifiers: Mapping[str, str] | None = None,
) -> None:
    data: dict[str, Any] = {
        "max_length": max_length,
        "stride": stride,
        "subtokens": subtokens,
        "decoding": "best valid IOB2 path (Viterbi) over word log-probabilities"
        + (" and the learned tag transitions (CRF)" if transitions is not None else ""),
        "outside_bias": outside_bias,
        "abbreviations": abbreviations,
        "identifiers": dict(identifiers or {}),
    }
    if transitions is not None:
        data["transitions"] = transitions.to_json()
    (folder / ENCODING_FILE).write_text(json.dumps(data), encoding="utf-8")


def read_encoding(folder: Path) -> dict[str, Any]:
    """Window length, stride, ``outside_bias``, ``subtokens``, ``abbreviations``, ``transitions`` and the
    ``identifiers`` label map (:mod:`~synthner_shared.ner.identifiers`) as written by
    :func:`write_encoding` (absent keys left out; folders written before the policy had a name say ``first labelled,
    rest -100``, which is ``first``)."""
    path = folder / ENCODING_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    found: dict[str, Any] = {key: int(data[key]) for key in ("max_length", "stride") if key in data}
    if "outside_bias" in data:
        found["outside_bias"] = float(data["outside_bias"])
    if "abbreviations" in data:
        if not isinstance(data["abbreviations"], bool):
            raise ValueError(f"{path}: abbreviations must be true or false, not {data['abbreviations']!r}")
        found["abbreviations"] = data["abbreviations"]
    if "subtokens" in data:
        policy = _LEGACY_SUBTOKENS.get(data["subtokens"], data["subtokens"])
        if policy not in ("first", "all"):
            raise ValueError(f"{path}: unknown sub-token policy {data['subtokens']!r} (expected 'first' or 'all')")
        found["subtokens"] = policy
    if "identifiers" in data:
        if not isinstance(data["identifiers"], dict):
            raise ValueError(f"{path}: identifiers must be an object of kind -> label, not {data['identifiers']!r}")
        try:
            found["identifiers"] = check_label_map(data["identifiers"])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    if "transitions" in data:
        try:
            found["transitions"] = TagTransitions.from_json(data["transitions"])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    return found


_LEGACY_SUBTOKENS = {"first labelled, rest -100": "first"}
"""What ``encoding.json`` said before the sub-token policy had a name."""


def iob2_tags_of(id2label: Mapping[Any, Any]) -> list[str]:
    """The model's tags in id order from a config's ``id2label`` (keys ints or their strings); a clear
    :class:`ModelFolderError` when there is none or they are not IOB2 tags."""
    if not id2label:
        raise ModelFolderError("the model config has no id2label map (not a token-classification model)")
    tags = [str(id2label.get(i, id2label.get(str(i)))) for i in range(len(id2label))]
    not_iob2 = [tag for tag in tags if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2)]
    if not_iob2:
        raise ModelFolderError(
            f"the model's labels are not IOB2 tags (O, B-x, I-x): {not_iob2[:5]}"
            " (a base model without a trained token-classification head?)"
        )
    return tags


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of consecutive rows (sorted longest first): a row joins the batch while the batch, padded to
    its first (longest) row, stays within ``max_tokens``; the first row always does."""
    start = 0
    while start < len(lengths):
        end = start + 1
        while end < len(lengths) and (end - start + 1) * lengths[start] <= max_tokens:
            end += 1
        yield start, end
        start = end


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Right-padded ``input_ids`` and ``attention_mask`` of a batch (int64, as BERT-like models take them)."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
        mask[index, : len(row)] = 1
    return ids, mask


def log_softmax(logits: npt.NDArray[np.floating[Any]]) -> LogProbabilities:
    """Log-probabilities over the last axis, in float32 (as ``torch.log_softmax`` of the float logits)."""
    values = logits.astype(np.float32, copy=False)
    shifted = values - values.max(axis=-1, keepdims=True)
    result: LogProbabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result


Job = tuple[int, int, int]
"""``(document, window, length)``: one window of one text to run through the model."""


class WindowedTagger(ABC):
    """Predicts entity character spans for whole texts of any length; subclasses run the model on token-id rows."""

    def __init__(
        self,
        tokenizer: Any,
        tags: Sequence[str],
        *,
        max_positions: int | None = None,
        max_length: int = 256,
        stride: int = 64,
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        outside_bias: float = 0.0,
        subtokens: SubtokenPolicy = "first",
        abbreviations: bool = False,
        transitions: TagTransitions | None = None,
        identifiers: Mapping[str, str] | None = None,
    ) -> None:
        self.identifiers = check_label_map(identifiers or {})
        self.outside_bias = outside_bias
        self.abbreviations = abbreviations
        self.subtokens: SubtokenPolicy = subtokens
        self.tokenizer = tokenizer
        self.special = SpecialTokens.of(tokenizer)
        self.window = min(max_length, max_positions or max_length) - len(self.special)
        self.stride = min(stride, self.window - 1)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.tags = list(tags)
        if transitions is not None and len(transitions.start) != len(self.tags):
            raise ModelFolderError(
                f"the tag transitions are for {len(transitions.start)} tags, the model has {len(self.tags)}"
            )
        self.transitions = transitions
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    @abstractmethod
    def log_probabilities(self, rows: Sequence[Sequence[int]]) -> LogProbabilities:
        """The model's log-probability of every tag at every position of ``rows`` (token ids with the special
        tokens, of different lengths: the runtime pads them to the longest)."""

    @property
    def labels(self) -> list[str]:
        """The entity labels the model predicts (without B-/I- prefixes)."""
        return sorted({tag[2:] for tag in self.tags if tag != "O"})

    def predict(self, texts: Sequence[str]) -> list[list[CharSpan]]:
        """Entity spans for each text, sorted and non-overlapping, with offsets into that text."""
        return [self.decode(scored) for scored in self.score(texts)]

    def score(self, texts: Sequence[str]) -> list[WordScores]:
        """The model's log-probability of every tag for every word of each text (one forward pass per window)."""
        tokenized = [tokenize(self.tokenizer, text) for text in texts]
        plans = [plan_windows(tokens, self.window, self.stride) for tokens in tokenized]
        # (document, window, length), longest first: similar lengths batch well, each batch pads to its first entry.
        jobs = sorted(
            ((doc, w, end - start) for doc, windows in enumerate(plans) for w, (start, end) in enumerate(windows)),
            key=lambda job: -job[2],
        )
        predicted: list[list[list[list[float]]]] = [[[] for _ in windows] for windows in plans]
        offset = len(self.special.prefix)
        for batch in self.batches(jobs):
            rows = []
            for doc, w, _ in batch:
                start, end = plans[doc][w]
                rows.append([*self.special.prefix, *tokenized[doc].input_ids[start:end], *self.special.suffix])
            scores = self.log_probabilities(rows)
            for row, (doc, w, length) in enumerate(batch):
                predicted[doc][w] = scores[row, offset : offset + length].tolist()
        return [
            WordScores(
                texts[i], tokens, word_scores(tokens, plans[i], predicted[i], self.subtokens) if plans[i] else []
            )
            for i, tokens in enumerate(tokenized)
        ]

    def batches(self, jobs: Sequence[Job]) -> Iterator[Sequence[Job]]:
        """Batches of jobs (sorted longest first): ``batch_size`` windows each, and, with ``max_batch_tokens``, no
        more than that many tokens once padded to the batch's first (longest) window."""
        for chunk in _chunks(jobs, self.batch_size):
            if self.max_batch_tokens is None:
                yield chunk
                continue
            padded = len(self.special)
            for start, end in token_budget_batches([length + padded for _, _, length in chunk], self.max_batch_tokens):
                yield chunk[start:end]

    def decode(
        self,
        scored: WordScores,
        outside_bias: float | None = None,
        abbreviations: bool | None = None,
        identifiers: Mapping[str, str] | None = None,
    ) -> list[CharSpan]:
        """Spans of the best valid IOB2 path through a text's word scores, with the mentions of abbreviations the
        text defines for them when ``abbreviations`` (:mod:`~synthner_shared.ner.abbreviations`), and the structured
        identifiers of the ``identifiers`` label map (:mod:`~synthner_shared.ner.identifiers`); the options default
        to the predictor's."""
        bias = self.outside_bias if outside_bias is None else outside_bias
        path = best_tag_path(self.tags, scored.scores, bias, self.transitions)
        spans = decode_word_tags(scored.tokens, [self.tags[t] for t in path])
        expand = self.abbreviations if abbreviations is None else abbreviations
        spans = with_abbreviations(scored.text, spans) if expand else spans
        return with_identifiers(scored.text, spans, self.identifiers if identifiers is None else identifiers)

    def predict_scored(self, texts: Sequence[str]) -> list[list[ScoredSpan]]:
        """Like :meth:`predict`, with each span's confidence (:class:`ScoredSpan`)."""
        return [self.decode_scored(scored) for scored in self.score(texts)]

    def decode_scored(self, scored: WordScores) -> list[ScoredSpan]:
        """The spans :meth:`decode` gives, each scored with the mean probability of its words' decoded tags; a
        mention of an abbreviation the text defines gets its long form's score."""
        path = best_tag_path(self.tags, scored.scores, self.outside_bias, self.transitions)
        word_tags = [self.tags[t] for t in path]
        word_probabilities = [math.exp(row[t]) for row, t in zip(scored.scores, path, strict=True)]
        words = scored.tokens.words()
        spans: list[ScoredSpan] = []
        word = 0
        decoded = decode_word_tags(scored.tokens, word_tags)
        for span in decoded:
            while words[word][2] <= span.start:
                word += 1
            inside = []
            while word < len(words) and words[word][1] < span.end:
                if word_tags[word] != OUTSIDE:
                    inside.append(word_probabilities[word])
                word += 1
            score = sum(inside) / len(inside) if inside else 0.0
            spans.append(ScoredSpan(span.start, span.end, span.label, min(1.0, max(0.0, score))))
        if self.abbreviations:
            spans = with_abbreviation_mentions(scored.text, decoded, spans)
        return with_scored_identifiers(scored.text, spans, self.identifiers)

    def predict_documents(self, documents: Sequence[Document]) -> list[Document]:
        """Copies of ``documents`` (same id and text) whose entities are the model's predictions."""
        return with_spans(documents, self.predict([d.text for d in documents]))


def with_spans(documents: Sequence[Document], spans: Sequence[Sequence[CharSpan]]) -> list[Document]:
    """Copies of ``documents`` (same id and text) whose entities are ``spans`` (one list per document)."""
    return [
        Document(id=d.id, text=d.text, entities=[DocumentEntity(start=s.start, end=s.end, label=s.label) for s in p])
        for d, p in zip(documents, spans, strict=True)
    ]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
