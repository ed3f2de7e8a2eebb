"""Windowed token-classification inference with a torch model (needs the ``model`` extra: torch).

Import this module only where a torch model runs (training, evaluation, the annotator's encoder backend);
``import synthner_shared`` and ``synthner_shared.ner`` stay torch-free. Tokenisation, windows, batching and decoding
are :class:`~synthner_shared.ner.windowed.WindowedTagger`'s, shared with the NER API's ONNX Runtime predictor
(:mod:`synthner_shared.ner.onnx`); this module adds only the torch forward pass and the loading of torch weights.
Loading never reaches a model hub: only local folders are accepted (``local_files_only``; processes also run with
the hub switched off, :func:`synthner_shared.offline.stay_offline`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from synthner_shared.ner.encoding import SubtokenPolicy, TagTransitions
from synthner_shared.ner.windowed import (
    ENCODING_FILE,
    LogProbabilities,
    ModelFolderError,
    WindowedTagger,
    WordScores,
    iob2_tags_of,
    read_encoding,
    with_abbreviation_mentions,
    with_spans,
    write_encoding,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from transformers import PreTrainedModel

__all__ = [
    "ENCODING_FILE",
    "DeviceUnavailableError",
    "ModelFolderError",
    "SpanPredictor",
    "WordScores",
    "pad_batch",
    "pick_device",
    "read_encoding",
    "with_abbreviation_mentions",
    "with_spans",
    "write_encoding",
]


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


class SpanPredictor(WindowedTagger):
    """Predicts entity character spans for whole texts of any length with a torch token-classification model."""

    def __init__(
        self,
        model: PreTrainedModel,  # or any module with .config.id2label returning .logits
        tokenizer: Any,
        max_length: int = 256,
        stride: int = 64,
        batch_size: int = 32,
        *,
        max_batch_tokens: int | None = None,
        outside_bias: float = 0.0,
        subtokens: SubtokenPolicy = "first",
        abbreviations: bool = False,
        transitions: TagTransitions | None = None,
        identifiers: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        super().__init__(
            tokenizer,
            iob2_tags_of(dict(model.config.id2label or {})),
            max_positions=getattr(model.config, "max_position_embeddings", None),
            max_length=max_length,
            stride=stride,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            outside_bias=outside_bias,
            subtokens=subtokens,
            abbreviations=abbreviations,
            transitions=transitions,
            identifiers=identifiers,
        )

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

    def score(self, texts: Sequence[str]) -> list[WordScores]:
        """The model's log-probability of every tag for every word of each text (one forward pass per window), in
        inference mode (no dropout, no autograd); the model's training mode is restored afterwards."""
        was_training = self.model.training
        self.model.train(False)
        try:
            with torch.inference_mode():
                return super().score(texts)
        finally:
            self.model.train(was_training)

    def log_probabilities(self, rows: Sequence[Sequence[int]]) -> LogProbabilities:
        device = next(self.model.parameters()).device
        ids, mask = pad_batch(rows, self.pad_id, device)
        scores = torch.log_softmax(self._logits(ids, mask).float(), dim=-1)
        result: LogProbabilities = scores.cpu().numpy()
        return result

    def _logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # type: ignore[no-any-return]
