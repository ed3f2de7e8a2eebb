"""The serving predictor: the shared windowed token classifier, with a forward pass tuned for latency on CPU.

It is composed from the shared :class:`~synthner_shared.ner.predictor.SpanPredictor` as loaded: encoding, windows,
scoring and decoding are the shared predictor's own, so offsets, entity boundaries and scores match evaluation
exactly. Only the model it calls differs (:class:`ServingModel`), which

- runs the forward pass on ONNX Runtime by default (``runtime="onnx"``, :mod:`synthner_ner_api.onnx_runtime`), or on
  eager torch (``runtime="torch"``);
- can run int8 weights (dynamic quantisation of the Linear layers / MatMuls), served only when its strict F1 on a
  gold sample is within the configured tolerance of the fp32 model (see :mod:`synthner_ner_api.loading`);
- splits the windows it is given (longest first) into batches of similar length under a token budget, so little
  compute goes to padding.

Each span carries a score: the mean probability of its words' decoded tags (a mention of an abbreviation the text
defines gets its long form's score).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import TokenClassifierOutput

from synthner_ner_api.models import SpanPrediction
from synthner_shared.ner.predictor import SpanPredictor


def quantize_int8(model: PreTrainedModel) -> PreTrainedModel:
    """int8 dynamic quantisation of every Linear layer (weights int8, activations quantised on the fly)."""
    from torch.ao.quantization import quantize_dynamic  # noqa: PLC0415 - only the int8 path needs it

    quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
    return cast("PreTrainedModel", quantized)


Runtime = Literal["onnx", "torch"]
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(input_ids, attention_mask) -> logits``."""


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of consecutive rows (sorted longest first): a row joins the batch while the batch, padded to
    its first (longest) row, stays within ``max_tokens``; the first row always does. (Counting each joining row at
    its own length, as before, let a batch of one long and many short rows pad far past the budget.)"""
    start = 0
    while start < len(lengths):
        end = start + 1
        while end < len(lengths) and (end - start + 1) * lengths[start] <= max_tokens:
            end += 1
        yield start, end
        start = end


class ServingModel(torch.nn.Module):
    """What the shared predictor calls as its model: ``model``'s configuration and parameters, with ``forward`` (ONNX
    Runtime or torch) run in token-budget batches, each cut to its own longest row."""

    def __init__(self, model: PreTrainedModel, forward: Forward, max_batch_tokens: int) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self._forward = forward
        self.max_batch_tokens = max_batch_tokens

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TokenClassifierOutput:
        lengths = [int(n) for n in attention_mask.sum(dim=1).tolist()]
        width = input_ids.shape[1]
        pieces = []
        for start, end in token_budget_batches(lengths, self.max_batch_tokens):
            cut = max(lengths[start:end])
            rows = (input_ids[start:end, :cut].contiguous(), attention_mask[start:end, :cut].contiguous())
            logits = self._forward(*rows)
            pieces.append(torch.nn.functional.pad(logits, (0, 0, 0, width - cut)))
        return TokenClassifierOutput(logits=torch.cat(pieces))


def with_model(base: SpanPredictor, model: torch.nn.Module, batch_size: int) -> SpanPredictor:
    """``base`` as loaded (tokenizer, windows, tags and every decoding option the shared predictor holds) calling
    ``model`` in batches of up to ``batch_size`` windows. A copy rather than a new predictor built from ``base``'s
    fields, so an option the shared predictor gains is carried over, not dropped."""
    predictor = copy.copy(base)
    predictor.model = cast("PreTrainedModel", model)  # the predictor needs only .config, parameters and .logits
    predictor.batch_size = batch_size
    return predictor


class ServingPredictor:
    """Character spans with scores for whole texts of any length; implements the API's ``Predictor`` port.

    ``base`` is the shared predictor as loaded (fp32 torch weights), or a serving predictor whose base is taken.
    """

    def __init__(
        self,
        base: SpanPredictor | ServingPredictor,
        max_batch_tokens: int = 8192,
        int8: bool = False,
        runtime: Runtime = "onnx",
        threads: int | None = None,
    ) -> None:
        self.base: SpanPredictor = base.base if isinstance(base, ServingPredictor) else base
        self.max_batch_tokens = max_batch_tokens
        self.int8 = int8
        self.runtime = runtime
        self.threads = threads
        model = self.base.model
        forward: Forward
        if runtime == "onnx":
            from synthner_ner_api.onnx_runtime import OnnxForward  # noqa: PLC0415 - onnxruntime loads only here

            forward = OnnxForward.export(model, int8=int8, threads=threads)
        else:
            if int8:
                model = quantize_int8(self.base.model)
            forward = _eager(model)
        # The token budget is what bounds a batch; the shared predictor's batch size only has to let it.
        self.predictor = with_model(self.base, ServingModel(model, forward, max_batch_tokens), max_batch_tokens)
        self.serving_info: dict[str, object] = {"precision": "int8" if int8 else "fp32", "runtime": runtime}

    @classmethod
    def load_for_serving(
        cls,
        folder: str | os.PathLike[str],
        *,
        int8: bool = False,
        threads: int | None = None,
        runtime: Runtime = "onnx",
    ) -> ServingPredictor:
        if threads is not None:
            torch.set_num_threads(threads)
        return cls(SpanPredictor.load(Path(folder), device="cpu"), int8=int8, runtime=runtime, threads=threads)

    def variant(self, *, int8: bool) -> ServingPredictor:
        """The same weights on the same runtime, in the other precision."""
        return ServingPredictor(self.base, self.max_batch_tokens, int8=int8, runtime=self.runtime, threads=self.threads)

    @property
    def tokenizer(self) -> Any:
        return self.base.tokenizer

    @property
    def window(self) -> int:
        """Tokens of text per window (without the special tokens)."""
        return self.base.window

    @property
    def stride(self) -> int:
        return self.base.stride

    @property
    def labels(self) -> list[str]:
        return self.base.labels

    def annotate(self, texts: Sequence[str]) -> list[list[SpanPrediction]]:
        return self.predictor.predict_scored(texts)


def _eager(model: PreTrainedModel) -> Forward:
    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits

    return forward
