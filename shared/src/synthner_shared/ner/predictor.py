"""Windowed token-classification inference that returns character spans (needs the ``model`` extra: torch).

Import this module only where a model runs; ``import synthner_shared`` and ``synthner_shared.ner`` stay torch-free.
Loading never reaches a model hub: only local folders are accepted (``local_files_only``; processes also run with
the hub switched off, :func:`synthner_shared.offline.stay_offline`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

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

if TYPE_CHECKING:
    from transformers import PreTrainedModel


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


class ModelFolderError(ValueError):
    """A model folder is missing, incomplete, or not a token-classification model."""


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


class DeviceUnavailableError(ValueError):
    """A CUDA device was asked for where there is none."""


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else CPU; ``cpu``/``cuda`` force one (``cuda`` without a GPU is an error)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        cuda = torch.version.cuda
        build = f"torch {torch.__version__}, " + (f"CUDA {cuda}" if cuda else "a CPU-only build")
        raise DeviceUnavailableError(f"device {requested} was asked for, but no CUDA device is available ({build})")
    return device


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` tensors of a batch."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return ids.to(device), mask.to(device)


class SpanPredictor:
    """Predicts entity character spans for whole texts of any length with a token-classification model."""

    def __init__(
        self,
        model: PreTrainedModel,  # or any module with .config.id2label returning .logits
        tokenizer: Any,
        max_length: int = 256,
        stride: int = 64,
        batch_size: int = 32,
        *,
        outside_bias: float = 0.0,
        subtokens: SubtokenPolicy = "first",
        abbreviations: bool = False,
        transitions: TagTransitions | None = None,
        identifiers: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        self.identifiers = check_label_map(identifiers or {})
        self.outside_bias = outside_bias
        self.abbreviations = abbreviations
        self.subtokens: SubtokenPolicy = subtokens
        self.tokenizer = tokenizer
        self.special = SpecialTokens.of(tokenizer)
        self.window = min(max_length, int(getattr(model.config, "max_position_embeddings", max_length))) - len(
            self.special
        )
        self.stride = min(stride, self.window - 1)
        self.batch_size = batch_size
        id2label: dict[Any, Any] = dict(model.config.id2label or {})
        if not id2label:
            raise ModelFolderError("the model config has no id2label map (not a token-classification model)")
        self.tags = [str(id2label.get(i, id2label.get(str(i)))) for i in range(len(id2label))]
        not_iob2 = [tag for tag in self.tags if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2)]
        if not_iob2:
            raise ModelFolderError(
                f"the model's labels are not IOB2 tags (O, B-x, I-x): {not_iob2[:5]}"
                " (a base model without a trained token-classification head?)"
            )
        if transitions is not None and len(transitions.start) != len(self.tags):
            raise ModelFolderError(
                f"the tag transitions are for {len(transitions.start)} tags, the model has {len(self.tags)}"
            )
        self.transitions = transitions
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], device: str = "auto", **options: Any) -> SpanPredictor:
        """Load a Hugging Face token-classification folder (config, weights, tokenizer) from local disk.

        Window length, stride and the decoder's ``outside_bias``, ``abbreviations``, ``identifiers`` and tag
        ``transitions`` default to those written with the model (``encoding.json``, by the trainer), else 256 and 64
        tokens, no bias, no abbreviation step, no identifiers and no transitions; ``options`` override them. On the
        CPU the weights load as fp32 whatever the folder stores (a half-precision folder from elsewhere would
        otherwise run in fp16, slowly and less
        exactly); on a GPU as stored.
        """
        path = Path(folder)
        options = {**read_encoding(path), **options}
        if not (path / "config.json").is_file():
            raise ModelFolderError(f"{path} is not a model folder (no config.json)")
        torch_device = pick_device(device)
        dtype = torch.float32 if torch_device.type == "cpu" else "auto"
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForTokenClassification.from_pretrained(path, local_files_only=True, dtype=dtype)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:  # RuntimeError: weights that do not fit config
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelFolderError(f"{path} could not be loaded as a token-classification model: {reason}") from exc
        model.to(torch_device)
        model.train(False)  # inference mode (no dropout)
        return cls(model, tokenizer, **options)

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
        device = next(self.model.parameters()).device
        offset = len(self.special.prefix)
        was_training = self.model.training
        self.model.train(False)
        try:
            with torch.inference_mode():
                for batch in self._batches(jobs):
                    inputs = []
                    for doc, w, _ in batch:
                        start, end = plans[doc][w]
                        inputs.append(
                            [*self.special.prefix, *tokenized[doc].input_ids[start:end], *self.special.suffix]
                        )
                    ids, mask = pad_batch(inputs, self.pad_id, device)
                    scores = torch.log_softmax(self._logits(ids, mask).float(), dim=-1)
                    for row, (doc, w, length) in enumerate(batch):
                        predicted[doc][w] = scores[row, offset : offset + length].tolist()
        finally:
            self.model.train(was_training)
        return [
            WordScores(
                texts[i], tokens, word_scores(tokens, plans[i], predicted[i], self.subtokens) if plans[i] else []
            )
            for i, tokens in enumerate(tokenized)
        ]

    def _batches(self, jobs: Sequence[tuple[int, int, int]]) -> Iterator[Sequence[tuple[int, int, int]]]:
        """Batches of ``(document, window, length)`` jobs, longest first: ``batch_size`` windows each."""
        return _chunks(jobs, self.batch_size)

    def _logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # type: ignore[no-any-return]

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
